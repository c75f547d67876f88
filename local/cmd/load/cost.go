package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/local/cost"
	"github.com/ordertimeout/ordertimeout/local/runenv"
	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// meters reads the counters of every process an order runs through: the
// functions but the sweeper (whose work is per run, not per order; printed
// apart) and the relay.
type meters struct {
	e      *runenv.Env
	client *http.Client
}

func newMeters(e *runenv.Env) meters {
	return meters{e: e, client: &http.Client{Timeout: 10 * time.Second}}
}

func (m meters) scrape(withSweep bool) (map[string]cost.Sample, error) {
	out := map[string]cost.Sample{}
	for name, url := range m.e.Metrics {
		if name == "Sweep" && !withSweep {
			continue
		}
		s, err := cost.Scrape(m.client, url)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w (restart make run: older runs export none)", name, err)
		}
		out[name] = s
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the running make run lists no metrics endpoints (restart make run)")
	}
	return out, nil
}

// costPaths runs n orders down each path of cost.Paths, one path at a
// time on a quiet system, and prints what one order of each used, read
// from the processes' counters: the work between a reading before the
// path's first create and one after its last decision (and its timer's
// delivery) settled. The functions' idle CPU, measured first over a quiet
// spell, is taken off.
func costPaths(ctx context.Context, m meters, envFile string, st *store.Store, run string, n int, timeout time.Duration) error {
	e := m.e
	logs := filepath.Join(filepath.Dir(envFile), "logs")
	item, scarce := run+"-cost", run+"-scarce"
	d := seed.Data{Items: []seed.Item{{ItemID: item, Name: item, PriceCents: 500, Stock: 1_000_000}, {ItemID: scarce, Name: scarce, PriceCents: 500, Stock: 1}}}
	users := func(path, i int) string { return fmt.Sprintf("%s-cost%d-u%04d", run, path, i) }
	for p := range cost.Paths {
		for i := range n {
			d.Wallets = append(d.Wallets, seed.Wallet{UserID: users(p, i), BalanceCents: 1_000_000})
		}
	}
	if err := seed.Apply(ctx, st, d); err != nil {
		return err
	}
	fmt.Printf("\nper-order work: %d orders down each path, one path at a time (timeout %v)\n", n, timeout)
	read := func() (map[string]cost.Sample, error) { return m.scrape(false) }
	// Idle CPU: what the processes burn with no orders (runtime, metric
	// exports), per second, over a quiet spell.
	idleFrom, err := read()
	if err != nil {
		return err
	}
	idleSpan := 5 * time.Second
	time.Sleep(idleSpan)
	idleTo, err := read()
	if err != nil {
		return err
	}
	idle := cost.Between(idleFrom, idleTo, runenv.Relay)
	idleFn, idleRelay := idle.FunctionCPUms/idleSpan.Seconds(), idle.RelayCPUms/idleSpan.Seconds()

	var rows []cost.Row
	ops := map[string]map[string][2]float64{}
	for p, path := range cost.Paths {
		before, err := read()
		if err != nil {
			return err
		}
		logsBefore := logBytes(logs)
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		var mu sync.Mutex
		var failures []string
		for i := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := orderPath(e, p, users(p, i), item, scarce, timeout); err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(failures) > 0 {
			return fmt.Errorf("path %q: %d of %d orders went wrong, e.g. %s", path, len(failures), n, failures[0])
		}
		if p != 3 { // every created order waits for its deadline's timer
			time.Sleep(time.Until(start.Add(timeout + time.Second)))
		}
		var after map[string]cost.Sample
		w, err := cost.Settle(func() (cost.Work, error) {
			a, err := read()
			after = a
			return cost.Between(before, a, runenv.Relay), err
		}, 2*time.Second, 60*time.Second)
		if err != nil {
			return err
		}
		w.LogBytes = float64(logBytes(logs) - logsBefore)
		span := time.Since(start).Seconds()
		w.FunctionCPUms = max(0, w.FunctionCPUms-idleFn*span)
		w.RelayCPUms = max(0, w.RelayCPUms-idleRelay*span)
		rows = append(rows, cost.Row{Path: path, Orders: n, Per: w.Per(n)})
		ops[path] = cost.OpsBetween(before, after)
	}
	cost.Table(os.Stdout, rows, true)
	fmt.Printf("(idle CPU taken off: functions %.1f ms/s, relay %.1f ms/s)\n", idleFn, idleRelay)
	fmt.Println("Firestore reads/writes per order by store operation:")
	for _, path := range cost.Paths {
		var parts []string
		for _, op := range slices.Sorted(maps.Keys(ops[path])) {
			rw := ops[path][op]
			parts = append(parts, fmt.Sprintf("%s %.1f/%.1f", op, rw[0]/float64(n), rw[1]/float64(n)))
		}
		fmt.Printf("  %-38s %s\n", path, strings.Join(parts, ", "))
	}
	return nil
}

// orderPath takes one order of user down path p of cost.Paths.
func orderPath(e *runenv.Env, p int, user, item, scarce string, timeout time.Duration) error {
	body := map[string]any{"items": []map[string]any{{"itemId": item, "quantity": 1}}, "paymentTimeoutSeconds": int(timeout / time.Second)}
	if p == 3 {
		body["items"] = []map[string]any{{"itemId": scarce, "quantity": 2}}
		code, err := e.Call(http.MethodPost, e.URL["CreateOrder"]+"/", user, body, nil)
		if code != http.StatusConflict || err == nil || !strings.Contains(err.Error(), "INSUFFICIENT_STOCK") {
			return fmt.Errorf("refused create: %d %v", code, err)
		}
		return nil
	}
	var ord createorder.OrderJSON
	if _, err := e.Call(http.MethodPost, e.URL["CreateOrder"]+"/", user, body, &ord); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	switch p {
	case 0:
		if _, err := e.Call(http.MethodPost, e.URL["Pay"]+"/", user, map[string]string{"orderId": ord.OrderID}, nil); err != nil {
			return fmt.Errorf("pay: %w", err)
		}
	case 2:
		if _, err := e.Call(http.MethodPost, e.URL["CreateOrder"]+"/"+ord.OrderID+"/cancel", user, nil, nil); err != nil {
			return fmt.Errorf("cancel: %w", err)
		}
	}
	return nil
}

// sweepCost prints what the sweeper's runs during the load cost, per run.
func sweepCost(before, after map[string]cost.Sample) {
	b, a := before["Sweep"], after["Sweep"]
	runs := a.Total["function_requests_total"] - b.Total["function_requests_total"]
	if runs <= 0 {
		return
	}
	w := cost.Between(map[string]cost.Sample{"Sweep": b}, map[string]cost.Sample{"Sweep": a}, runenv.Relay).Per(int(runs))
	fmt.Printf("sweeper            %.0f runs; per run %.1f reads, %.1f writes, %.1f deletes (a fixed cost per run, not per order)\n", runs, w.Reads, w.Writes, w.Deletes)
}

// logBytes is the size of the functions' logs under dir (make run writes
// one file per function).
func logBytes(dir string) int64 {
	var n int64
	for _, name := range []string{"CreateOrder", "DeductStock", "ClearCart", "Pay", "HandleTimeout"} {
		if fi, err := os.Stat(filepath.Join(dir, name+".log")); err == nil {
			n += fi.Size()
		}
	}
	return n
}
