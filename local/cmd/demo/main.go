// Command demo runs a visible scenario against the system `make run`
// started, and prints a timeline: one order paid; one whose "payment
// succeeded" announcement is lost and that is found PAID at its deadline;
// one that times out and gives its stock back; one the shopper cancels;
// her order list; the stock before and after; and the order events a
// subscriber of the topic received meanwhile.
//
//	make demo    # or: go run ./local/cmd/demo
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/functions/pay"
	"github.com/ordertimeout/ordertimeout/local/runenv"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
)

var start = time.Now()

func say(format string, args ...any) {
	fmt.Printf("[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	envFile := flag.String("env", ".run/env", "the file `make run` writes")
	flag.Parse()
	if err := run(*envFile); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type item struct {
	ItemID string `json:"itemId"`
	Stock  int64  `json:"stock"`
}

func run(envFile string) error {
	e, err := runenv.Load(envFile)
	if err != nil {
		return err
	}
	stock := func() (map[string]int64, error) {
		out := map[string]int64{}
		for _, id := range []string{"mug", "tea", "kettle"} {
			var it item
			if _, err := e.Call(http.MethodGet, e.URL["DeductStock"]+"/"+id, "", nil, &it); err != nil {
				return nil, err
			}
			out[id] = it.Stock
		}
		return out, nil
	}
	before, err := stock()
	if err != nil {
		return err
	}
	say("stock before: mug %d, tea %d, kettle %d", before["mug"], before["tea"], before["kettle"])
	// A subscriber of our own on the order events, as a shop's e-mail
	// service or warehouse would attach.
	ectx, stopEvents := context.WithCancel(context.Background())
	defer stopEvents()
	var (
		evMu   sync.Mutex
		seen   = map[string]bool{}
		ours   = map[string]string{}                 // order id → label
		early  = map[string][]orderevents.Received{} // events that came before their create's answer
		reveal = func(label string, r orderevents.Received) {
			if seen[r.ID] {
				return
			}
			seen[r.ID] = true
			extra := ""
			if r.Data.CancelReason != "" {
				extra = " " + r.Data.CancelReason
			}
			say("%s: event %s (id %s)%s", label, r.Type, r.ID, extra)
		}
	)
	listening, err := e.ListenEvents(ectx, fmt.Sprintf("demo-%d", time.Now().UnixNano()), func(r orderevents.Received) {
		evMu.Lock()
		defer evMu.Unlock()
		if label, ok := ours[r.Subject]; ok {
			reveal(label, r)
		} else {
			early[r.Subject] = append(early[r.Subject], r)
		}
	})
	if err != nil {
		return err
	}
	create := func(label, itemID string, qty, timeoutS int) (createorder.OrderJSON, error) {
		var o createorder.OrderJSON
		_, err := e.Call(http.MethodPost, e.URL["CreateOrder"]+"/", "alice",
			map[string]any{"items": []map[string]any{{"itemId": itemID, "quantity": qty}}, "paymentTimeoutSeconds": timeoutS}, &o)
		if err == nil {
			say("%s: created %s (%d × %s, %d cents), deadline in %d s", label, o.OrderID, qty, itemID, o.TotalCents, timeoutS)
			evMu.Lock()
			ours[o.OrderID] = label
			for _, r := range early[o.OrderID] {
				reveal(label, r)
			}
			evMu.Unlock()
		}
		return o, err
	}
	payFor := func(label string, o createorder.OrderJSON, extra ...string) error {
		_, err := e.Call(http.MethodPost, e.URL["Pay"]+"/", "alice", map[string]string{"orderId": o.OrderID}, nil, extra...)
		if err == nil {
			say("%s: paid %d cents", label, o.TotalCents)
		}
		return err
	}
	wait := func(label string, o createorder.OrderJSON, want string, within time.Duration) error {
		deadline := time.Now().Add(within)
		last := ""
		for {
			var got createorder.OrderJSON
			if _, err := e.Call(http.MethodGet, e.URL["CreateOrder"]+"/"+o.OrderID, "alice", nil, &got); err != nil {
				return err
			}
			if got.Status != last {
				extra := ""
				if got.CancelReason != "" {
					extra = " (" + got.CancelReason + ")"
				}
				say("%s: status %s%s", label, got.Status, extra)
				last = got.Status
			}
			if got.Status == want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: still %s after %v", label, got.Status, within)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	a, err := create("A paid        ", "mug", 1, 30)
	if err != nil {
		return err
	}
	b, err := create("B lost notice ", "kettle", 1, 6)
	if err != nil {
		return err
	}
	c, err := create("C unpaid      ", "tea", 2, 4)
	if err != nil {
		return err
	}
	d, err := create("D cancelled   ", "mug", 2, 60)
	if err != nil {
		return err
	}
	if err := payFor("A paid        ", a); err != nil {
		return err
	}
	var dc createorder.OrderJSON
	if _, err := e.Call(http.MethodPost, e.URL["CreateOrder"]+"/"+d.OrderID+"/cancel", "alice", nil, &dc); err != nil {
		return err
	}
	say("D cancelled   : the shopper cancelled: status %s (%s), its mugs back at once", dc.Status, dc.CancelReason)
	if err := payFor("B lost notice ", b, pay.FaultDropHeader, "1", "X-Internal-Token", e.InternalSecret); err != nil {
		return err
	}
	say("B lost notice : the \"payment succeeded\" announcement was dropped on purpose")
	if err := wait("A paid        ", a, "PAID", 15*time.Second); err != nil {
		return err
	}
	errs := make(chan error, 2)
	go func() { errs <- wait("C unpaid      ", c, "CANCELLED", 30*time.Second) }()
	go func() { errs <- wait("B lost notice ", b, "PAID", 30*time.Second) }()
	for range 2 {
		if err := <-errs; err != nil {
			return err
		}
	}
	after, err := stock()
	if err != nil {
		return err
	}
	say("stock after:  mug %d, tea %d, kettle %d", after["mug"], after["tea"], after["kettle"])
	var lines []string
	for _, id := range []string{"mug", "tea", "kettle"} {
		lines = append(lines, fmt.Sprintf("%s %+d", id, after[id]-before[id]))
	}
	say("net change: %s (A keeps 1 mug, B keeps 1 kettle, C's 2 teas and D's 2 mugs came back)", strings.Join(lines, ", "))
	var list createorder.ListJSON
	if _, err := e.Call(http.MethodGet, e.URL["CreateOrder"]+"/?pageSize=4", "alice", nil, &list); err != nil {
		return err
	}
	for _, o := range list.Orders {
		say("alice's orders, newest first: %s %s %s", o.OrderID, o.Status, o.CancelReason)
	}
	// Each order's events: created and its end (8 in all); wait for them.
	deadline := time.Now().Add(15 * time.Second)
	for {
		evMu.Lock()
		n := len(seen)
		evMu.Unlock()
		if n >= 8 || time.Now().After(deadline) {
			say("order events received: %d (created and the end of each of the four orders)", n)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopEvents()
	if err := <-listening; err != nil {
		return fmt.Errorf("order events: %w", err)
	}
	return nil
}
