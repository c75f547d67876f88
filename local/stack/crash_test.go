package stack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
	"github.com/ordertimeout/ordertimeout/shared/sweeper"
)

// CreateOrder as its own process is SIGKILLed right after its order's
// commit, before the event is published (a build with the crashaftercommit
// tag kills itself there). The order exists, no event was published; the
// next sweep finds the event in the outbox and publishes it: no committed
// change is left without its event.
func TestEventSurvivesKillAfterCommit(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	bin := filepath.Join(t.TempDir(), "function")
	if out, err := exec.Command("go", "build", "-tags", "crashaftercommit", "-o", bin, "../cmd/function").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"FUNCTION_TARGET=CreateOrder", fmt.Sprintf("PORT=%d", port), "CRASH_AFTER_COMMIT="+string(domain.EventCreated),
		"FIRESTORE_PROJECT_ID="+s.Cfg.Project, "AUTH_MODE=hs256", "AUTH_HS256_SECRET="+s.Cfg.AuthSecret,
		"INTERNAL_AUTH_MODE=shared-secret", "INTERNAL_SHARED_SECRET="+s.Cfg.InternalSecret,
		"AMQP_URL="+s.Cfg.AMQPURL, "BROKER_PREFIX="+s.Cfg.BrokerPrefix,
		"DEDUCTSTOCK_URL="+s.URL(stack.DeductStock), "CLEARCART_URL="+s.URL(stack.ClearCart), "PAY_URL="+s.URL(stack.Pay),
		"PUBSUB_PROJECT_ID="+s.Cfg.EventsProject, "EVENTS_TOPIC="+s.Cfg.EventsTopic, "MAX_UNPAID_ORDERS_PER_SHOPPER=0",
	)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if i > 300 {
			t.Fatalf("CreateOrder did not listen: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"items":[{"itemId":"i1","quantity":1}],"paymentTimeoutSeconds":600}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.Token("alice"))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the create answered %d; it should have died after its commit", resp.StatusCode)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("CreateOrder exited with %v, want SIGKILL\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CreateOrder did not die")
	}
	// The commit went through: the order, and its event in the outbox.
	pending, err := s.Store.PendingEvents(context.Background(), time.Now().Add(time.Hour), 10)
	if err != nil || len(pending) != 1 || pending[0].Type != domain.EventCreated {
		t.Fatalf("outbox after the kill: %+v %v", pending, err)
	}
	orderID := pending[0].Order.ID
	if o, err := s.Store.Order(context.Background(), orderID); err != nil || o.Status != domain.OrderUnpaid {
		t.Fatalf("order after the kill: %+v %v", o, err)
	}
	if hasEvent(s.Events(), orderID+".created") {
		t.Fatal("the event was published although the process died before publishing")
	}
	// The sweeper leaves an event to its writer for EventsAfter, then sends it.
	time.Sleep(sweeper.EventsAfter - time.Since(pending[0].RecordedAt) + 500*time.Millisecond)
	rep, err := s.Sweeper.Run(context.Background())
	if err != nil || rep.EventsDelivered != 1 {
		t.Fatalf("sweep: %+v %v", rep, err)
	}
	evs := s.WaitEvents(10*time.Second, func(evs []orderevents.Received) bool { return hasEvent(evs, orderID+".created") })
	checkEnvelope(t, byID(evs)[orderID+".created"], domain.EventCreated, "UNPAID")
	validateEvents(t, evs)
	if pending, err := s.Store.PendingEvents(context.Background(), time.Now().Add(time.Hour), 10); err != nil || len(pending) != 0 {
		t.Fatalf("outbox after the sweep: %+v %v", pending, err)
	}
}
