package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/relay"
)

// Shoppers who hang up mid-create fail only their own orders: 120 creates
// at once, half of them disconnecting at any moment of their create (5 ms
// up to 1.5 × a create's latency at that load), four rounds; every
// patient create answers 201, and once every order is decided the
// invariants hold (what the impatient ones reserved was given back or
// ordered, never lost).
func TestHangUpsFailNoOtherCreate(t *testing.T) {
	t.Parallel()
	// A slow emulator under 120 creates at once must not time a patient
	// create out: this test is about hang-ups, not about timeouts.
	s := stack.Start(t, stack.Options{Configure: func(c *config.Config) { c.CallTimeout = 20 * time.Second }})
	init := bigSeed(t, s, 40, 40)
	// How long a create takes at this concurrency: the hang-ups are spread
	// over all of it, so some land during the timer's publish.
	latency := measureCreates(t, s, 120)
	hangups := 0
	for round := range 4 {
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			failed []string
		)
		for i := range 120 {
			impatient := i%2 == 1
			wg.Add(1)
			go func() {
				defer wg.Done()
				body, _ := json.Marshal(map[string]any{"items": []map[string]any{{"itemId": fmt.Sprintf("item%03d", i%40), "quantity": 1}}, "paymentTimeoutSeconds": 2})
				ctx := context.Background()
				if impatient {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, hangAfter(latency))
					defer cancel()
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL(stack.CreateOrder)+"/", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+s.Token(fmt.Sprintf("user%03d", (i+round)%40)))
				resp, err := http.DefaultClient.Do(req)
				mu.Lock()
				defer mu.Unlock()
				if impatient {
					if err != nil {
						hangups++
					} else {
						resp.Body.Close()
					}
					return
				}
				if err != nil {
					failed = append(failed, err.Error())
					return
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					var b bytes.Buffer
					_, _ = b.ReadFrom(resp.Body)
					failed = append(failed, fmt.Sprintf("%d %s", resp.StatusCode, b.String()))
				}
			}()
		}
		wg.Wait()
		if len(failed) > 0 {
			t.Fatalf("round %d: %d of 60 patient creates failed, first: %s", round, len(failed), failed[0])
		}
	}
	if hangups == 0 {
		t.Fatal("no client hung up: the test did not test")
	}
	t.Logf("creates took ~%v; %d of 240 impatient clients hung up before their answer", latency, hangups)
	quiesce(t, s, 60*time.Second)
	time.Sleep(s.Cfg.SweepSagaBudget + 3*time.Second) // creates abandoned mid-saga: their timers release them
	if _, err := s.Sweeper.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s, init)
}

// measureCreates runs n creates at once and returns their median latency.
func measureCreates(t *testing.T, s *stack.Stack, n int) time.Duration {
	t.Helper()
	var wg sync.WaitGroup
	took := make([]time.Duration, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{"items": []map[string]any{{"itemId": fmt.Sprintf("item%03d", i%40), "quantity": 1}}, "paymentTimeoutSeconds": 2}, s.Bearer(fmt.Sprintf("user%03d", i%40))...)
			if r.Status != http.StatusCreated {
				t.Errorf("create: %d %s", r.Status, r.Body)
			}
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	slices.Sort(took)
	return took[n/2]
}

// hangAfter picks when an impatient client hangs up: any moment from 5 ms
// to 1.5 × the typical create latency.
func hangAfter(latency time.Duration) time.Duration {
	return 5*time.Millisecond + rand.N(latency*3/2)
}

// Money never wraps: an order whose line or total does not fit in int64
// cents is 400 INVALID_ARGUMENT with nothing reserved and no order; the
// seed refuses such a price with a clear message.
func TestMoneyOverflowIsRefused(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	const big = 4_000_000_000_000_000_000
	err := seed.Apply(context.Background(), s.Store, seed.Data{Items: []seed.Item{{ItemID: "gold", Name: "Gold", PriceCents: big, Stock: 10}}})
	if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), "overflow int64 cents") {
		t.Fatalf("seed of a price of %d: %v, want a refusal that says why", int64(big), err)
	}
	// Stored some other way (an import, an older seed): the order is still refused.
	for _, it := range []domain.Item{{ID: "gold", Name: "Gold", PriceCents: big, Stock: 10}, {ID: "silver", Name: "Silver", PriceCents: big / 2, Stock: 10}} {
		if err := s.Store.PutItem(context.Background(), it); err != nil {
			t.Fatal(err)
		}
	}
	for name, items := range map[string][]map[string]any{
		"line total":  {{"itemId": "gold", "quantity": 3}},
		"order total": {{"itemId": "gold", "quantity": 2}, {"itemId": "silver", "quantity": 1}},
	} {
		r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{"items": items}, s.Bearer("alice")...)
		if r.Status != http.StatusBadRequest || r.ErrorCode() != "INVALID_ARGUMENT" || !strings.Contains(string(r.Body), "int64 cents") {
			t.Fatalf("%s overflow: %d %s, want 400 INVALID_ARGUMENT", name, r.Status, r.Body)
		}
	}
	for _, id := range []string{"gold", "silver"} {
		if got := stock(t, s, id); got != 10 {
			t.Fatalf("%s stock %d after refused orders, want 10", id, got)
		}
	}
	if orders, _ := ordersIn(t, s, domain.OrderUnpaid); len(orders) != 0 {
		t.Fatalf("%d orders exist", len(orders))
	}
	// One gold bar fits.
	if o := create(t, s, "alice", 60, "gold", 1); o.TotalCents != big {
		t.Fatalf("total %d, want %d", o.TotalCents, int64(big))
	}
}

// A relay whose credential HandleTimeout refuses (a rotated secret) retries
// every timer instead of dead-lettering it; once fixed, every order is
// decided.
func TestWrongCredentialNeverDeadLettersTimers(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	orders := fiveDueOrders(t, s)
	wrong := s.StartRelay(relay.Options{Token: "rotated-away-0123456789", BackoffBase: 200 * time.Millisecond, BackoffMax: time.Second, Concurrency: 4})
	deadline := time.Now().Add(15 * time.Second)
	for wrong.Metrics.Refusals(http.StatusForbidden) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals counted", wrong.Metrics.Refusals(http.StatusForbidden))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // refused for ~4 s in all
	s.StopRelay()
	if n := wrong.Metrics.DeadLettered.Load(); n != 0 {
		t.Fatalf("%d timers dead-lettered for a credential problem", n)
	}
	if n := deadCount(t, s); n != 0 {
		t.Fatalf("%d messages in %s", n, s.Topology.DeadQueue())
	}
	s.StartRelay(relay.Options{BackoffBase: 200 * time.Millisecond, BackoffMax: time.Second, Concurrency: 4})
	for _, id := range orders {
		waitStatus(t, s, "alice", id, "CANCELLED", 30*time.Second)
	}
	checkInvariants(t, s, basicInitial)
}

// fiveDueOrders seeds the basic data and creates five orders of alice's,
// due in a second.
func fiveDueOrders(t *testing.T, s *stack.Stack) []string {
	t.Helper()
	seedBasic(t, s)
	var orders []string
	for range 5 {
		orders = append(orders, create(t, s, "alice", 1, "i1", 1).OrderID)
	}
	return orders
}

func deadCount(t *testing.T, s *stack.Stack) int {
	t.Helper()
	ch := testenv.AMQPChannel(t, s.Cfg.AMQPURL)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(s.Topology.DeadQueue(), true, false, false, false, map[string]any{"x-queue-type": "quorum"})
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// A shopper's cart holds at most an order's worth of lines: a new line in a
// full cart is 409 CART_FULL and changes nothing; changing a line already
// in it still works.
func TestCartFullIsRefused(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	var d seed.Data
	cart := seed.Cart{UserID: "carol"}
	for i := range domain.MaxLinesPerOrder + 1 {
		id := fmt.Sprintf("c%02d", i)
		d.Items = append(d.Items, seed.Item{ItemID: id, Name: id, PriceCents: 1, Stock: 5})
		if i < domain.MaxLinesPerOrder {
			cart.Items = append(cart.Items, seed.CartLine{ItemID: id, Quantity: 1})
		}
	}
	d.Carts = []seed.Cart{cart}
	if err := seed.Apply(context.Background(), s.Store, d); err != nil {
		t.Fatal(err)
	}
	url := s.URL(stack.ClearCart) + "/"
	last := fmt.Sprintf("c%02d", domain.MaxLinesPerOrder)
	if r := s.Call(http.MethodPut, url+last, map[string]any{"quantity": 1}, s.Bearer("carol")...); r.Status != http.StatusConflict || r.ErrorCode() != "CART_FULL" {
		t.Fatalf("new line in a full cart: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodPut, url+"c00", map[string]any{"quantity": 3}, s.Bearer("carol")...); r.Status != http.StatusOK {
		t.Fatalf("changing a line of a full cart: %d %s", r.Status, r.Body)
	}
	c, err := s.Store.Cart(context.Background(), "carol")
	if err != nil || len(c.Lines) != domain.MaxLinesPerOrder || c.Has(last) || c.Lines[0].Quantity != 3 {
		t.Fatalf("cart after: %d lines, %v", len(c.Lines), err)
	}
}
