// Command load puts the system `make run` started under load: it creates
// N orders at rate R over many users and items, pays a chosen fraction at
// random times (some after their deadline), lets the rest expire, shows a
// live progress line, and reports create throughput, create latency
// p50/p99, timeout lateness p50/p99/max and the invariant check. It draws
// two PNG charts: orders by state over time, and the lateness histogram.
//
//	make load                      # 2,000 orders at 100/s
//	go run ./local/cmd/load -orders 5000 -rate 200 -pay 0.4 -timeout 10s -out .run/load
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/local/cost"
	"github.com/ordertimeout/ordertimeout/local/invariant"
	"github.com/ordertimeout/ordertimeout/local/runenv"
	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

type options struct {
	orders, users, items, parallel int
	shards                         int
	stock, maxPerShopper           int64
	rate, payFraction, cancelFrac  float64
	timeout, grace, settle         time.Duration
	out, env                       string
	chaos                          bool
	faults                         int
	costOrders                     int
}

func main() {
	var o options
	flag.IntVar(&o.orders, "orders", 2000, "orders to create")
	flag.Float64Var(&o.rate, "rate", 100, "orders per second")
	flag.IntVar(&o.users, "users", 200, "distinct users")
	flag.IntVar(&o.items, "items", 100, "distinct items")
	flag.IntVar(&o.shards, "shards", 1, "stock shards per item (a flash sale: -items 1 -shards 16)")
	flag.Int64Var(&o.stock, "stock", 1_000_000, "stock per item (below the orders' units: the rest are refused 409, counted as failed)")
	flag.Int64Var(&o.maxPerShopper, "max-per-shopper", 0, "each item's purchase limit per shopper (0: none); refusals are counted by reason")
	flag.IntVar(&o.parallel, "parallel", 64, "requests in flight at most")
	flag.Float64Var(&o.payFraction, "pay", 0.5, "fraction of orders paid (at a random time up to 1.3 × the timeout)")
	flag.Float64Var(&o.cancelFrac, "cancel", 0, "fraction of the unpaid orders the shopper cancels (at a random time before the deadline)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "payment timeout of each order")
	flag.DurationVar(&o.grace, "grace", 30*time.Second, "how long after the last deadline to wait for every order to be decided")
	flag.DurationVar(&o.settle, "settle", 90*time.Second, "how long after the last deadline the invariants may take to hold: a create cut off mid-saga is released by the sweeper after SWEEP_SAGA_BUDGET (30 s in make run), at its next run (every 30 s)")
	flag.StringVar(&o.out, "out", ".run/load", "folder for the PNG charts")
	flag.StringVar(&o.env, "env", ".run/env", "the file `make run` writes")
	flag.BoolVar(&o.chaos, "chaos", false, "inject faults during the run: kill -9 of the relay and of a function, RabbitMQ stopped for ~10 s, the relay frozen for ~20 s")
	flag.IntVar(&o.faults, "faults", 4, "with -chaos: how many faults (each kind once before any repeats)")
	flag.IntVar(&o.costOrders, "cost-orders", 20, "after the load, orders per path for the per-order work table (0: none; never with -chaos)")
	flag.Parse()
	if o.chaos && o.grace < 90*time.Second {
		o.grace = 90 * time.Second // faults delay decisions; the sweeper catches up within its grace and interval
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "\nload:", err)
		os.Exit(1)
	}
}

type sample struct {
	at                    time.Duration
	unpaid, paid, cancels int
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func run(o options) error {
	e, err := runenv.Load(o.env)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := store.New(ctx, e.Project)
	if err != nil {
		return err
	}
	defer st.Close()

	// Our own users and items, so the invariant check knows the initial state.
	run := fmt.Sprintf("l%d", time.Now().Unix()%100000)
	init := invariant.Initial{Stock: map[string]int64{}, Balance: map[string]int64{}}
	var d seed.Data
	for i := range o.items {
		id := fmt.Sprintf("%s-item%04d", run, i)
		it := seed.Item{ItemID: id, Name: id, PriceCents: int64(100 + i%900), Stock: o.stock, Shards: o.shards}
		if o.maxPerShopper > 0 {
			it.MaxPerShopper = &o.maxPerShopper
		}
		d.Items = append(d.Items, it)
		init.Stock[id] = o.stock
	}
	for i := range o.users {
		id := fmt.Sprintf("%s-user%04d", run, i)
		d.Wallets = append(d.Wallets, seed.Wallet{UserID: id, BalanceCents: 1_000_000_000})
		init.Balance[id] = 1_000_000_000
	}
	if err := seed.Apply(ctx, st, d); err != nil {
		return err
	}
	fmt.Printf("seeded %d items and %d users (prefix %s); creating %d orders at %.0f/s, paying %.0f%%, timeout %v\n",
		o.items, o.users, run, o.orders, o.rate, o.payFraction*100, o.timeout)

	var (
		created, failed, paid, payRefused, cancelled, cancelRefused atomic.Int64
		mu                                                          sync.Mutex
		latencies                                                   []time.Duration
		refusals                                                    = map[string]int{}
		ids                                                         = map[string]bool{}
		wg                                                          sync.WaitGroup
		sem                                                         = make(chan struct{}, o.parallel)
	)
	// A subscriber of the order events, to check at the end that every
	// decided order told the shop exactly once (by event id).
	var (
		evMu   sync.Mutex
		copies = map[string]int{} // event id → copies received
		evLag  []time.Duration    // decision events: received − the decision's time (its commit)
	)
	evCtx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	if _, err := e.ListenEvents(evCtx, "load-"+run, func(r orderevents.Received) {
		evMu.Lock()
		if copies[r.ID]++; copies[r.ID] == 1 && (r.Type == string(domain.EventPaid) || r.Type == string(domain.EventCancelled)) {
			evLag = append(evLag, time.Since(r.Time))
		}
		evMu.Unlock()
	}); err != nil {
		return fmt.Errorf("order events: %w", err)
	}
	// The processes' counters before the load, for its work per order.
	m := newMeters(e)
	var countersBefore map[string]cost.Sample
	if !o.chaos { // a killed process starts its counters again
		if countersBefore, err = m.scrape(true); err != nil {
			return err
		}
	}
	begin := time.Now()
	// Follow the orders' states from the start, every 500 ms.
	var (
		smu      sync.Mutex
		samples  []sample
		lateness []time.Duration
		sampErr  error
	)
	observe := func() sample {
		all, err := st.AllOrders(ctx)
		s := sample{at: time.Since(begin)}
		var late []time.Duration
		if err != nil {
			smu.Lock()
			sampErr = err
			smu.Unlock()
			return s
		}
		mu.Lock()
		for _, ord := range all {
			if !ids[ord.ID] {
				continue
			}
			switch ord.Status {
			case domain.OrderUnpaid:
				s.unpaid++
			case domain.OrderPaid:
				s.paid++
			case domain.OrderCancelled:
				s.cancels++
				if ord.CancelReason == domain.CancelPaymentTimeout {
					late = append(late, ord.CancelledAt.Sub(ord.Deadline))
				}
			}
		}
		mu.Unlock()
		smu.Lock()
		samples, lateness = append(samples, s), late
		smu.Unlock()
		fmt.Printf("\r%6.1fs  created %d (failed %d)  UNPAID %d  PAID %d  CANCELLED %d  payments %d ok / %d refused   ",
			s.at.Seconds(), created.Load(), failed.Load(), s.unpaid, s.paid, s.cancels, paid.Load(), payRefused.Load())
		return s
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				observe()
			}
		}
	}()

	var monkey *chaos
	var monkeyDone sync.WaitGroup
	if o.chaos {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(o.env), "bin"))
		if err != nil {
			return err
		}
		if resolved, err := filepath.EvalSymlinks(abs); err == nil {
			abs = resolved
		}
		monkey = &chaos{bin: abs, begin: begin, nodes: e.ClusterNodes}
		window := time.Duration(float64(o.orders)/o.rate*float64(time.Second)) + o.timeout
		monkeyDone.Add(1)
		go func() { defer monkeyDone.Done(); monkey.run(o.faults, window) }()
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
	for i := range o.orders {
		<-tick.C
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("%s-user%04d", run, rand.IntN(o.users))
			lines := []map[string]any{{"itemId": fmt.Sprintf("%s-item%04d", run, rand.IntN(o.items)), "quantity": 1 + rand.IntN(3)}}
			if j := rand.IntN(o.items); fmt.Sprintf("%s-item%04d", run, j) != lines[0]["itemId"] && i%2 == 0 {
				lines = append(lines, map[string]any{"itemId": fmt.Sprintf("%s-item%04d", run, j), "quantity": 1})
			}
			var ord createorder.OrderJSON
			t0 := time.Now()
			code, err := e.Call(http.MethodPost, e.URL["CreateOrder"]+"/", user, map[string]any{"items": lines, "paymentTimeoutSeconds": int(o.timeout / time.Second)}, &ord)
			lat := time.Since(t0)
			<-sem
			if err != nil {
				failed.Add(1)
				reason := fmt.Sprint(code)
				for _, c := range []string{"PURCHASE_LIMIT", "TOO_MANY_UNPAID_ORDERS", "INSUFFICIENT_STOCK", "UNAVAILABLE"} {
					if strings.Contains(err.Error(), `"`+c+`"`) {
						reason += " " + c
					}
				}
				mu.Lock()
				refusals[reason]++
				mu.Unlock()
				return
			}
			created.Add(1)
			mu.Lock()
			latencies = append(latencies, lat)
			ids[ord.OrderID] = true
			mu.Unlock()
			switch r := rand.Float64(); {
			case r < o.payFraction:
				time.Sleep(time.Duration(rand.Float64() * 1.3 * float64(o.timeout)))
				if _, err := e.Call(http.MethodPost, e.URL["Pay"]+"/", user, map[string]string{"orderId": ord.OrderID}, nil); err == nil {
					paid.Add(1)
				} else {
					payRefused.Add(1)
				}
			case r < o.payFraction+(1-o.payFraction)*o.cancelFrac:
				time.Sleep(time.Duration(rand.Float64() * float64(o.timeout)))
				if _, err := e.Call(http.MethodPost, e.URL["CreateOrder"]+"/"+ord.OrderID+"/cancel", user, nil, nil); err == nil {
					cancelled.Add(1)
				} else {
					cancelRefused.Add(1)
				}
			}
		}()
	}
	tick.Stop()
	createSpan := time.Since(begin)

	// Wait until every order is decided (or grace runs out).
	lastDeadline := time.Now().Add(o.timeout)
	for {
		time.Sleep(500 * time.Millisecond)
		smu.Lock()
		var s sample
		if len(samples) > 0 {
			s = samples[len(samples)-1]
		}
		err := sampErr
		smu.Unlock()
		if err != nil {
			return err
		}
		if time.Now().After(lastDeadline) && s.unpaid == 0 && s.at > time.Since(begin)-time.Second {
			break
		}
		if time.Now().After(lastDeadline.Add(o.grace)) {
			fmt.Println()
			return fmt.Errorf("%d orders still UNPAID %v after the last deadline", s.unpaid, o.grace)
		}
	}
	wg.Wait()
	monkeyDone.Wait()
	close(stopSampling)
	<-sampled
	observe()
	fmt.Println()

	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	sort.Slice(lateness, func(i, j int) bool { return lateness[i] < lateness[j] })
	// A create cut off mid-saga (its function killed) leaves a reservation
	// that the sweeper releases only after SWEEP_SAGA_BUDGET, at its next
	// run: until then the stock it holds is not yet back. So the check is
	// repeated until it holds, or until settle has passed since the last
	// deadline, whichever comes first; what is still wrong then is reported.
	var res invariant.Result
	for {
		if res, err = invariant.Check(ctx, st, init, time.Now(), o.grace); err != nil {
			return err
		}
		if res.OK() || time.Now().After(lastDeadline.Add(max(o.settle, o.grace))) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	fmt.Printf("create throughput  %.1f orders/s (%d in %v, %d failed)\n", float64(created.Load())/createSpan.Seconds(), created.Load(), createSpan.Round(time.Millisecond), failed.Load())
	if len(refusals) > 0 {
		fmt.Printf("creates refused    %v\n", refusals)
	}
	fmt.Printf("create latency     p50 %v  p99 %v\n", percentile(latencies, 0.5).Round(time.Millisecond), percentile(latencies, 0.99).Round(time.Millisecond))
	if len(lateness) > 0 {
		fmt.Printf("timeout lateness   p50 %v  p99 %v  max %v  (deadline → CANCELLED, %d orders)\n",
			percentile(lateness, 0.5).Round(time.Millisecond), percentile(lateness, 0.99).Round(time.Millisecond), lateness[len(lateness)-1].Round(time.Millisecond), len(lateness))
	}
	fmt.Printf("payments           %d succeeded, %d refused (order already closed)\n", paid.Load(), payRefused.Load())
	fmt.Printf("shopper cancels    %d succeeded, %d refused\n", cancelled.Load(), cancelRefused.Load())
	fmt.Printf("invariants         %s\n", res)
	if countersBefore != nil {
		after, err := m.scrape(true)
		if err != nil {
			return err
		}
		sweepCost(countersBefore, after)
		delete(countersBefore, "Sweep")
		delete(after, "Sweep")
		w := cost.Between(countersBefore, after, runenv.Relay).Per(int(created.Load()))
		fmt.Printf("work per order     %.1f reads, %.1f writes, %.1f deletes, %.1f transactions (%.2f retries), %.1f broker messages, %.1f function CPU-ms (the whole mix, per created order; refused creates included)\n",
			w.Reads, w.Writes, w.Deletes, w.Transactions, w.Retries, w.BrokerMessages(), w.FunctionCPUms)
	}
	evErr := checkEvents(ctx, st, ids, func() map[string]int {
		evMu.Lock()
		defer evMu.Unlock()
		return maps.Clone(copies)
	}, o.settle)
	evMu.Lock()
	slices.Sort(evLag)
	if len(evLag) > 0 {
		fmt.Printf("event latency      p50 %v  p99 %v  (a decision's commit → its event at a subscriber, %d events)\n",
			percentile(evLag, 0.5).Round(time.Millisecond), percentile(evLag, 0.99).Round(time.Millisecond), len(evLag))
	}
	evMu.Unlock()
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	states, hist := filepath.Join(o.out, "orders-by-state.png"), filepath.Join(o.out, "lateness.png")
	var faults []fault
	if monkey != nil {
		faults = monkey.report()
		fmt.Printf("faults injected     %d\n", len(faults))
		for _, f := range faults {
			fmt.Printf("   at %6.1fs for %5.1fs  %s\n", f.at.Seconds(), f.dur.Seconds(), f.what)
		}
	}
	if err := plotStates(samples, faults, states); err != nil {
		return err
	}
	if err := plotLateness(lateness, hist); err != nil {
		return err
	}
	fmt.Printf("charts             %s  %s\n", states, hist)
	if !res.OK() {
		return fmt.Errorf("invariants violated")
	}
	if evErr != nil {
		return evErr
	}
	if o.costOrders > 0 && !o.chaos {
		return costPaths(ctx, m, o.env, st, run, o.costOrders, o.timeout)
	}
	return nil
}

// checkEvents waits (up to within) until every created order has its
// created event and exactly the event of its final state, by id, and
// reports what it received.
func checkEvents(ctx context.Context, st *store.Store, ids map[string]bool, copies func() map[string]int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		got := copies()
		var missing, wrong []string
		total, dupes := 0, 0
		for _, n := range got {
			total += n
			dupes += n - 1
		}
		for id := range ids {
			o, err := st.Order(ctx, id)
			if err != nil {
				return err
			}
			paid, cancelled := got[id+".paid"] > 0, got[id+".cancelled"] > 0
			switch {
			case got[id+".created"] == 0:
				missing = append(missing, id+".created")
			case o.Status == domain.OrderPaid && !paid, o.Status == domain.OrderCancelled && !cancelled:
				missing = append(missing, id+" "+string(o.Status))
			}
			if paid && cancelled || o.Status == domain.OrderPaid && cancelled || o.Status == domain.OrderCancelled && paid {
				wrong = append(wrong, id)
			}
		}
		if len(wrong) > 0 {
			return fmt.Errorf("order events: %d orders have an event of a state they did not end in: %v", len(wrong), wrong[:min(5, len(wrong))])
		}
		if len(missing) == 0 {
			fmt.Printf("order events       every one of %d orders: created and its final state, once by id (%d copies received, %d duplicates)\n", len(ids), total, dupes)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("order events: %d missing after %v, e.g. %v", len(missing), within, missing[:min(5, len(missing))])
		}
		time.Sleep(2 * time.Second)
	}
}
