package stack_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/deadletter"
	"github.com/ordertimeout/ordertimeout/shared/relay"
)

// The runbook's case: a relay pointed at the wrong target exhausts its
// attempts and dead-letters every timer; once fixed, a redrive (a dry run
// first, which changes nothing) puts them back on the ladder and every
// order is decided, with stock and money conserved.
func TestRedriveAfterMisconfiguredTarget(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	orders := fiveDueOrders(t, s)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	wrong := s.StartRelay(relay.Options{Target: fmt.Sprintf("http://127.0.0.1:%d/", port), MaxAttempts: 2, BackoffBase: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	deadline := time.Now().Add(20 * time.Second)
	for wrong.Metrics.DeadLettered.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d dead-lettered", wrong.Metrics.DeadLettered.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.StopRelay()
	s.StartRelay(relay.Options{})
	session := func() *deadletter.Session {
		ds, err := deadletter.Open(s.Cfg.AMQPURL, s.Topology, 100)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	ds := session()
	if n := len(ds.Letters()); n != 5 {
		t.Fatalf("%d dead letters, want 5", n)
	}
	if counts := deadletter.CountByReason(ds.Letters()); counts["gave up after 2 attempts; last"] != 5 {
		t.Fatalf("by reason: %v", counts)
	}
	dry, err := ds.Redrive(context.Background(), deadletter.Filter{Reason: "gave up"}, true, time.Now())
	if err != nil || len(dry) != 5 {
		t.Fatalf("dry run: %d, %v", len(dry), err)
	}
	ds.Close()
	if n := deadCount(t, s); n != 5 {
		t.Fatalf("after a dry run %d dead letters, want 5", n)
	}
	for _, id := range orders {
		if o := getOrder(t, s, "alice", id); o.Status != "UNPAID" {
			t.Fatalf("%s is %s before the redrive", id, o.Status)
		}
	}
	ds = session()
	done, err := ds.Redrive(context.Background(), deadletter.Filter{Reason: "gave up"}, false, time.Now())
	ds.Close()
	if err != nil || len(done) != 5 {
		t.Fatalf("redrive: %d, %v", len(done), err)
	}
	for _, id := range orders {
		waitStatus(t, s, "alice", id, "CANCELLED", 20*time.Second)
	}
	if n := deadCount(t, s); n != 0 {
		t.Fatalf("%d dead letters after the redrive", n)
	}
	checkInvariants(t, s, basicInitial)
}
