package stack_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/local/invariant"
	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/relay"
)

// bigSeed spreads load over many items and users, as a shop would.
func bigSeed(t *testing.T, s *stack.Stack, items, users int) invariant.Initial {
	t.Helper()
	init := invariant.Initial{Stock: map[string]int64{}, Balance: map[string]int64{}}
	var d seed.Data
	for i := range items {
		id := fmt.Sprintf("item%03d", i)
		d.Items = append(d.Items, seed.Item{ItemID: id, Name: id, PriceCents: int64(100 + i), Stock: 1000})
		init.Stock[id] = 1000
	}
	for i := range users {
		id := fmt.Sprintf("user%03d", i)
		d.Wallets = append(d.Wallets, seed.Wallet{UserID: id, BalanceCents: 10_000_000})
		init.Balance[id] = 10_000_000
	}
	if err := seed.Apply(context.Background(), s.Store, d); err != nil {
		t.Fatal(err)
	}
	return init
}

// createMany creates n orders over users × items with `parallel` in flight.
func createMany(t *testing.T, s *stack.Stack, n, items, users, timeoutS, parallel int) []createorder.OrderJSON {
	t.Helper()
	out := make([]createorder.OrderJSON, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			user := fmt.Sprintf("user%03d", i%users)
			a, b := fmt.Sprintf("item%03d", i%items), fmt.Sprintf("item%03d", (i*7+1)%items)
			lines := []map[string]any{{"itemId": a, "quantity": 1 + i%3}}
			if a != b {
				lines = append(lines, map[string]any{"itemId": b, "quantity": 1})
			}
			r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{"items": lines, "paymentTimeoutSeconds": timeoutS}, s.Bearer(user)...)
			if r.Status != 201 {
				t.Errorf("create %d: %d %s", i, r.Status, r.Body)
				return
			}
			_ = r.JSON(&out[i])
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// ordersIn returns every stored order and how many are in status.
func ordersIn(t *testing.T, s *stack.Stack, status domain.OrderStatus) ([]domain.Order, int) {
	t.Helper()
	orders, err := s.Store.AllOrders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range orders {
		if o.Status == status {
			n++
		}
	}
	return orders, n
}

// quiesce waits until no order is UNPAID.
func quiesce(t *testing.T, s *stack.Stack, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, unpaid := ordersIn(t, s, domain.OrderUnpaid)
		if unpaid == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d orders still UNPAID after %v", unpaid, within)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func checkInvariants(t *testing.T, s *stack.Stack, init invariant.Initial) invariant.Result {
	t.Helper()
	res, err := invariant.Check(context.Background(), s.Store, init, time.Now(), s.Cfg.SweepGrace+5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Violations {
		if i < 20 {
			t.Errorf("invariant: %s", v)
		}
	}
	if !res.OK() {
		t.FailNow()
	}
	return res
}

// ≥ 200 orders whose payments are fired at the deadline instant: exactly
// one terminal state each, and wallets are debited only for PAID orders.
func TestPayRacesDeadline(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	init := bigSeed(t, s, 40, 20)
	orders := createMany(t, s, 200, 40, 20, 3, 12)
	var wg sync.WaitGroup
	var payOK, payClosed, payOther atomic.Int64
	for i, o := range orders {
		if i%3 == 2 {
			continue // never paid: must time out
		}
		deadline, err := time.Parse(time.RFC3339Nano, o.Deadline)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(deadline) + time.Duration(rand.IntN(100)-50)*time.Millisecond)
			r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer(o.UserID)...)
			switch {
			case r.Status == 200:
				payOK.Add(1)
			case r.Status == 409:
				payClosed.Add(1)
			default:
				payOther.Add(1)
				t.Errorf("pay %s: %d %s", o.OrderID, r.Status, r.Body)
			}
		}()
	}
	wg.Wait()
	quiesce(t, s, 60*time.Second)
	res := checkInvariants(t, s, init)
	if int64(res.Orders[domain.OrderPaid]) != payOK.Load() {
		t.Fatalf("%d PAID orders but %d successful payments", res.Orders[domain.OrderPaid], payOK.Load())
	}
	t.Logf("at the deadline: %d payments won, %d lost to the timeout; %s", payOK.Load(), payClosed.Load(), res)
}

// The relay is killed with SIGKILL during a burst of 1,000 deadlines and
// restarted: every order is resolved.
func TestRelayKilledDuringDeadlineBurst(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	init := bigSeed(t, s, 100, 50)
	orders := createMany(t, s, 1000, 100, 50, 8, 16)
	bin := filepath.Join(t.TempDir(), "relay")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ordertimeout/ordertimeout/shared/cmd/relay").CombinedOutput(); err != nil {
		t.Fatalf("build relay: %v\n%s", err, out)
	}
	start := func() *exec.Cmd {
		port, _ := testenv.FreePort()
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "AMQP_URL="+s.Cfg.AMQPURL, "BROKER_PREFIX="+s.Cfg.BrokerPrefix,
			"RELAY_TARGET_URL="+s.URL(stack.HandleTimeout), "INTERNAL_SHARED_SECRET="+s.Cfg.InternalSecret,
			"RELAY_CONCURRENCY=16", "RELAY_BACKOFF_BASE=200ms", "RELAY_BACKOFF_MAX=2s", fmt.Sprintf("PORT=%d", port), "LOG_LEVEL=error")
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cmd := start()
	cancelled := func() int {
		_, n := ordersIn(t, s, domain.OrderCancelled)
		return n
	}
	deadline := time.Now().Add(90 * time.Second)
	for cancelled() < len(orders)/4 {
		if time.Now().After(deadline) {
			t.Fatal("the burst did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	killedAt := cancelled()
	if killedAt == len(orders) {
		t.Fatal("every order was decided before the kill; the test proves nothing")
	}
	cmd = start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	quiesce(t, s, 120*time.Second)
	res := checkInvariants(t, s, init)
	if res.Orders[domain.OrderCancelled] != len(orders) {
		t.Fatalf("%d of %d cancelled", res.Orders[domain.OrderCancelled], len(orders))
	}
	t.Logf("killed with %d of %d decided; after restart: %s", killedAt, len(orders), res)
}

// A crash between two saga steps (CreateOrder dies right after the stock
// step): the sweeper gives the stock back once the saga budget has passed.
func TestCrashAfterStockStepSweeperReleases(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{CrashAfterReserve: true, Configure: func(c *config.Config) { c.SweepSagaBudget = 2 * time.Second }})
	seedBasic(t, s)
	req, _ := http.NewRequest(http.MethodPost, s.URL(stack.CreateOrder)+"/", strings.NewReader(`{"items":[{"itemId":"i1","quantity":4}]}`))
	req.Header.Set("Authorization", "Bearer "+s.Token("alice"))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the crashed create answered %d", resp.StatusCode)
	}
	if stock(t, s, "i1") != 6 {
		t.Fatalf("stock %d: the crash should leave the reservation behind", stock(t, s, "i1"))
	}
	// Before the budget passes the sweeper leaves it alone.
	rep, err := s.Sweeper.Run(context.Background())
	if err != nil || rep.OrphansFound != 0 {
		t.Fatalf("early sweep: %+v %v", rep, err)
	}
	time.Sleep(2500 * time.Millisecond)
	r := s.Call(http.MethodPost, s.URL(stack.Sweep)+"/", nil, s.Internal()...)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"orphansFound":1`) {
		t.Fatalf("sweep: %d %s", r.Status, r.Body)
	}
	if stock(t, s, "i1") != 10 {
		t.Fatalf("stock %d after the sweep, want 10", stock(t, s, "i1"))
	}
	checkInvariants(t, s, basicInitial)
	// Sweeping again finds nothing.
	if rep, err := s.Sweeper.Run(context.Background()); err != nil || rep.OrphansFound+rep.OverdueFound != 0 {
		t.Fatalf("second sweep: %+v %v", rep, err)
	}
}

// An order whose timer was lost (never published) is decided by the sweeper.
func TestSweeperDecidesOrderWithLostTimer(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	seedBasic(t, s)
	o := create(t, s, "alice", 1, "i1", 2)
	paid := create(t, s, "alice", 1, "i2", 1)
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": paid.OrderID}, s.Bearer("alice")...); r.Status != 200 {
		t.Fatalf("pay: %d", r.Status)
	}
	time.Sleep(1*time.Second + s.Cfg.SweepGrace + 200*time.Millisecond)
	rep, err := s.Sweeper.Run(context.Background())
	if err != nil || rep.OverdueFound != 2 || rep.Decided["cancelled"] != 1 || rep.Decided["paid"] != 1 {
		t.Fatalf("sweep: %+v %v", rep, err)
	}
	if got := getOrder(t, s, "alice", o.OrderID); got.Status != "CANCELLED" {
		t.Fatalf("status %s", got.Status)
	}
	if got := getOrder(t, s, "alice", paid.OrderID); got.Status != "PAID" {
		t.Fatalf("status %s", got.Status)
	}
	checkInvariants(t, s, basicInitial)
}

// Moving a deadline: the old timer becomes a no-op, the new deadline holds.
func TestExtendDeadline(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	o := create(t, s, "alice", 2, "i1", 1)
	old, _ := time.Parse(time.RFC3339Nano, o.Deadline)
	newDeadline := old.Add(3 * time.Second)
	r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/extend", map[string]string{"orderId": o.OrderID, "deadline": newDeadline.Format(time.RFC3339Nano)}, s.Internal()...)
	if r.Status != 200 {
		t.Fatalf("extend: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/extend", map[string]string{"orderId": o.OrderID, "deadline": o.Deadline}, s.Internal()...); r.Status != 409 {
		t.Fatalf("move earlier: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/extend", map[string]string{"orderId": o.OrderID, "deadline": newDeadline.Add(time.Hour).Format(time.RFC3339Nano)}, s.Bearer("alice")...); r.Status != 401 {
		t.Fatalf("extend by a user: %d %s", r.Status, r.Body)
	}
	time.Sleep(time.Until(old) + 1500*time.Millisecond)
	if got := getOrder(t, s, "alice", o.OrderID); got.Status != "UNPAID" {
		t.Fatalf("the old deadline cancelled the order: %s", got.Status)
	}
	c := waitStatus(t, s, "alice", o.OrderID, "CANCELLED", 10*time.Second)
	at, _ := time.Parse(time.RFC3339Nano, c.CancelledAt)
	if at.Before(newDeadline) {
		t.Fatalf("cancelled at %v, before the new deadline %v", at, newDeadline)
	}
}

// Early checks (CHECK_LADDER) find a payment whose announcement was lost
// long before the deadline.
func TestEarlyCheckFindsLostPayment(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{DropAnnouncements: true, Configure: func(c *config.Config) {
		c.CheckLadder = []time.Duration{time.Second, 2 * time.Second}
	}})
	seedBasic(t, s)
	o := create(t, s, "alice", 60, "i1", 1)
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer("alice")...); r.Status != 200 {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	paid := waitStatus(t, s, "alice", o.OrderID, "PAID", 10*time.Second)
	deadline, _ := time.Parse(time.RFC3339Nano, paid.Deadline)
	if at, _ := time.Parse(time.RFC3339Nano, paid.PaidAt); !at.Before(deadline.Add(-50 * time.Second)) {
		t.Fatalf("paid at %v: not found by an early check (deadline %v)", at, deadline)
	}
	checkInvariants(t, s, basicInitial)
}

// Two relays on the same queues (terraform's relay_instances = 2) during a
// burst of 300 deadlines: both deliver, every order is decided exactly
// once, nothing is lost or restored twice.
func TestTwoRelaysShareTheQueues(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	init := bigSeed(t, s, 30, 30)
	first := s.StartRelay(relay.Options{Concurrency: 8})
	second := s.StartRelay(relay.Options{Concurrency: 8})
	createMany(t, s, 300, 30, 30, 2, 16)
	quiesce(t, s, 60*time.Second)
	res := checkInvariants(t, s, init)
	a, b := first.Metrics.Delivered.Load(), second.Metrics.Delivered.Load()
	if a == 0 || b == 0 {
		t.Fatalf("delivered %d and %d: both relays should share the work", a, b)
	}
	t.Logf("the relays delivered %d and %d; %s", a, b, res)
}

// A broker that takes connections and never answers (frozen, or behind a
// black-holing proxy): creates at once each fail with a prompt 503, not
// one after another behind a dial, and leave nothing reserved.
func TestCreateWithASilentBrokerIsAPrompt503(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	s := stack.Start(t, stack.Options{CreateOrderBrokerURL: testenv.SilentBroker(t), CreateOrderPublishTimeout: timeout})
	seedBasic(t, s)
	var wg sync.WaitGroup
	took := make([]time.Duration, 4)
	statuses := make([]int, 4)
	for i := range took {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{"items": []map[string]any{{"itemId": "i1", "quantity": 1}}}, s.Bearer("alice")...)
			took[i], statuses[i] = time.Since(start), r.Status
		}()
	}
	wg.Wait()
	for i := range took {
		// The publish's own bound plus the compensation: never the sum
		// of everyone's dials.
		if statuses[i] != http.StatusServiceUnavailable || took[i] > 4*timeout {
			t.Errorf("create %d: %d after %v, want 503 within about %v", i, statuses[i], took[i], timeout)
		}
	}
	if n := stock(t, s, "i1"); n != 10 {
		t.Fatalf("stock %d after the failed creates, want 10", n)
	}
}
