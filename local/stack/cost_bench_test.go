package stack_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/capacity"
	"github.com/ordertimeout/ordertimeout/local/cost"
	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// BenchmarkOrderCost takes a fixed mix — costOrders orders down each path
// of cost.Paths — through the whole stack, and reports the Firestore work
// and broker messages per order of the mix, counted by the store and the
// publisher and relay (their metrics' sources), so a change that adds a
// write or a message per order shows in review. It prints the per-path
// table too (no CPU: every function shares this process).
//
//	go test -run '^$' -bench OrderCost -benchtime 1x ./local/stack/
func BenchmarkOrderCost(b *testing.B) {
	for range b.N {
		rows := measurePaths(b, 10)
		var mix cost.Work
		for _, r := range rows {
			mix = mix.Plus(r.Per)
		}
		per := mix.Per(len(rows))
		b.ReportMetric(per.Reads, "reads/order")
		b.ReportMetric(per.Writes, "writes/order")
		b.ReportMetric(per.Deletes, "deletes/order")
		b.ReportMetric(per.BrokerMessages(), "broker-msgs/order")
		b.ReportMetric(per.Delivered, "deliveries/order")
		if b.N == 1 || os.Getenv("COST_TABLE") != "" {
			cost.Table(os.Stdout, rows, false)
		}
	}
}

// TestCostModelMatchesTheStack: the per-order work the cost model prices
// (local/capacity.Paths, from `make load`) is what the code does today —
// a change that adds a read, a write or a message per order fails here
// until the model (and docs/capacity.md) say so.
func TestCostModelMatchesTheStack(t *testing.T) {
	t.Parallel()
	rows := measurePaths(t, 3)
	for i, r := range rows {
		m, w := capacity.Paths[i], r.Per
		if m.Name != r.Path || m.Reads != w.Reads || m.Writes != w.Writes || m.Deletes != w.Deletes || m.Published != w.Published || m.Deliveries != w.Delivered {
			t.Errorf("%s: measured %.1f reads, %.1f writes, %.1f deletes, %.1f published, %.1f delivered per order; the model has %.1f, %.1f, %.1f, %.1f, %.1f (update local/capacity.Paths from make load, then go run ./local/cmd/capacity -write-doc docs/capacity.md)",
				r.Path, w.Reads, w.Writes, w.Deletes, w.Published, w.Delivered, m.Reads, m.Writes, m.Deletes, m.Published, m.Deliveries)
		}
	}
}

// measurePaths takes n orders down each path of cost.Paths through a
// whole stack (the shopper cap on, as deployed by default), one path at a
// time, and returns each path's work per order, counted by the store, the
// publisher and the relay (their metrics' sources).
func measurePaths(tb testing.TB, n int) []cost.Row {
	s := stack.Start(tb, stack.Options{Configure: func(c *config.Config) { c.MaxUnpaidPerShopper = config.DefaultMaxUnpaid }})
	items := []seed.Item{{ItemID: "cost", Name: "Cost", PriceCents: 500, Stock: 1_000_000}, {ItemID: "scarce", Name: "Scarce", PriceCents: 500, Stock: 1}}
	var wallets []seed.Wallet
	for p := range cost.Paths {
		for i := range n {
			wallets = append(wallets, seed.Wallet{UserID: fmt.Sprintf("p%d-u%d", p, i), BalanceCents: 1_000_000})
		}
	}
	if err := seed.Apply(context.Background(), s.Store, seed.Data{Items: items, Wallets: wallets}); err != nil {
		tb.Fatal(err)
	}
	read := func() cost.Work {
		u := store.TotalUsage(s.Store.Usage())
		m := s.Relay.Metrics
		return cost.Work{Reads: float64(u.Reads), Writes: float64(u.Writes), Deletes: float64(u.Deletes),
			Transactions: float64(u.Transactions), Retries: float64(u.Attempts - u.Transactions),
			Published: float64(s.Publisher.Published()), Delivered: float64(m.Delivered.Load()), Hops: float64(m.Hops.Load()),
			DeadLettered: float64(m.DeadLettered.Load()), Retried: float64(m.Retried.Load())}
	}
	var rows []cost.Row
	for p, path := range cost.Paths {
		before := read()
		start := time.Now()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { costOrder(tb, s, p, fmt.Sprintf("p%d-u%d", p, i)) })
		}
		wg.Wait()
		if p != 3 { // a created order's timer fires at its 2 s deadline
			time.Sleep(time.Until(start.Add(3 * time.Second)))
		}
		after, err := cost.Settle(func() (cost.Work, error) { return read(), nil }, time.Second, 30*time.Second)
		if err != nil {
			tb.Fatal(err)
		}
		rows = append(rows, cost.Row{Path: path, Orders: n, Per: after.Minus(before).Per(n)})
	}
	return rows
}

// costOrder takes one order of user down path p (2 s deadline).
func costOrder(b testing.TB, s *stack.Stack, p int, user string) {
	body := map[string]any{"items": []map[string]any{{"itemId": "cost", "quantity": 1}}, "paymentTimeoutSeconds": 2}
	if p == 3 {
		body["items"] = []map[string]any{{"itemId": "scarce", "quantity": 2}}
		if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", body, s.Bearer(user)...); r.Status != http.StatusConflict {
			b.Errorf("refused create: %d %s", r.Status, r.Body)
		}
		return
	}
	r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", body, s.Bearer(user)...)
	var o struct {
		OrderID string `json:"orderId"`
	}
	if r.Status != http.StatusCreated || r.JSON(&o) != nil {
		b.Errorf("create: %d %s", r.Status, r.Body)
		return
	}
	switch p {
	case 0:
		if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer(user)...); r.Status != http.StatusOK {
			b.Errorf("pay: %d %s", r.Status, r.Body)
		}
	case 2:
		if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/"+o.OrderID+"/cancel", nil, s.Bearer(user)...); r.Status != http.StatusOK {
			b.Errorf("cancel: %d %s", r.Status, r.Body)
		}
	}
}
