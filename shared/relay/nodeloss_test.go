//go:build outage

package relay_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/relay"
)

// On a real three-node cluster: 10,000 timers pending over several tiers,
// coming due within about a minute; the node that leads ot.due is killed
// with SIGKILL while they wait. Quorum queues keep every timer on the other
// two, the publisher and the relay move to a live node, and every timer is
// delivered, none early.
func TestNodeLossTimersAllDelivered(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	topo := broker.Topology{Prefix: testenv.UniqueName("ot-nodeloss"), Mode: broker.ModeLadder, Tiers: 8} // tiers of 4, 8, 16 and 32 s
	e := newEnvFor(t, c.URLs(), topo)
	if err := testenv.OnAMQPChannel(c.Nodes[0].URL, topo.Declare); err != nil {
		t.Fatal(err)
	}
	const n = 10_000
	start := time.Now()
	due := make([]time.Time, n)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				due[i] = start.Add(25*time.Second + time.Duration(i)*35*time.Second/n) // due 25–60 s from now
				if err := e.pub.Publish(context.Background(), events.Timeout(fmt.Sprintf("o%05d", i), due[i], start, "")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	t.Logf("10,000 timers confirmed on the cluster in %v", time.Since(start).Round(time.Millisecond))
	tiers := map[string]int{}
	for k := 4; k < 8; k++ {
		tiers[topo.TierQueue(k)] = e.queueLenOn(c.Nodes[0].URL, topo.TierQueue(k))
	}
	s := newSink(t)
	r, _ := e.runOn(c.URLs(), relay.Options{Concurrency: 32}, s.srv.URL)
	victim, err := c.Leader(topo.DueQueue())
	if err != nil {
		t.Fatal(err)
	}
	led := []string{}
	for q, count := range tiers {
		if l, err := c.Leader(q); err == nil && l == victim {
			led = append(led, fmt.Sprintf("%s (%d timers)", q, count))
		}
	}
	sort.Strings(led)
	time.Sleep(3 * time.Second)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s, leader of %s and of %s; timers per tier %v", victim.Name, topo.DueQueue(), strings.Join(led, ", "), tiers)
	end := time.Now().Add(4 * time.Minute)
	for s.distinct() < n {
		if time.Now().After(end) {
			live := c.Nodes[1].URL
			if victim == c.Nodes[1] {
				live = c.Nodes[0].URL
			}
			depths := map[string]int{}
			for _, q := range []string{topo.DueQueue(), topo.RetryQueue(), topo.DeadQueue(), topo.TierQueue(6), topo.TierQueue(7)} {
				depths[q] = e.queueLenOn(live, q)
			}
			t.Fatalf("%d of %d delivered after 4 min; queue depths %v; relay connected %v, reconnects %d, in flight %d, held %d",
				s.distinct(), n, depths, r.Metrics.Connected.Load(), r.Metrics.Reconnects.Load(), r.Metrics.InFlight.Load(), r.Metrics.Held.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	late := make([]time.Duration, 0, n)
	for i := range n {
		id := events.Timeout(fmt.Sprintf("o%05d", i), due[i], start, "").ID
		first := s.firstT[id]
		if first.Before(due[i]) {
			t.Errorf("%s delivered %v early", id, due[i].Sub(first))
		}
		late = append(late, first.Sub(due[i]))
	}
	s.mu.Unlock()
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	t.Logf("every timer delivered; lateness p50 %v, p99 %v, max %v; relay reconnects %d, redeliveries %d, dead-lettered %d",
		late[n/2].Round(time.Millisecond), late[n*99/100].Round(time.Millisecond), late[n-1].Round(time.Millisecond),
		r.Metrics.Reconnects.Load(), r.Metrics.Redelivered.Load(), r.Metrics.DeadLettered.Load())
	if r.Metrics.DeadLettered.Load() != 0 {
		t.Fatalf("%d timers dead-lettered", r.Metrics.DeadLettered.Load())
	}
}
