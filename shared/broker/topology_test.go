package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

// Route picks the longest declared tier that leaves the message its slack,
// and the due queue for the last HoldMax.
func TestRoute(t *testing.T) {
	for _, tiers := range []int{10, TierCount} {
		topo := Topology{Prefix: "p", Mode: ModeLadder, Tiers: tiers}
		declared := map[string]bool{}
		for k := firstTier; k < tiers; k++ {
			declared[topo.TierQueue(k)] = true
		}
		for _, remaining := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond, time.Second, 1999 * time.Millisecond,
			2 * time.Second, 4 * time.Second, 4499 * time.Millisecond, 4500 * time.Millisecond, 8 * time.Second, 9 * time.Second, 64 * time.Second, 15 * time.Minute,
			24 * time.Hour, 400 * 24 * time.Hour} {
			ex, key := topo.Route(remaining)
			if remaining < HoldMax {
				if ex != topo.HopExchange() || key != "" {
					t.Errorf("tiers %d, %v: routed to %s/%s, want the due queue", tiers, remaining, ex, key)
				}
				continue
			}
			if ex != topo.DelayExchange() || !declared[key] {
				t.Fatalf("tiers %d, %v: routed to %s/%s, not a declared tier", tiers, remaining, ex, key)
			}
			var k int
			for k = firstTier; topo.TierQueue(k) != key; k++ {
			}
			fits := func(k int) bool { return TierTTL(k)+TierTTL(k)/8 <= remaining }
			if !fits(k) || (k+1 < tiers && fits(k+1)) {
				t.Errorf("tiers %d, %v: tier %d (%v) is not the longest that leaves an eighth of its TTL", tiers, remaining, k, TierTTL(k))
			}
		}
	}
	if s := TierTTL(firstTier); s+tierSlack(s) != HoldMax {
		t.Fatalf("HoldMax %v is not the shortest tier (%v) plus its slack", HoldMax, s)
	}
}

// Against the real RabbitMQ: a message returned to the due queue more often
// than the delivery limit (a relay crash-looping) goes to the dead-letter
// queue with the broker's reason, never away.
func TestDeliveryLimitDeadLettersNeverDrops(t *testing.T) {
	url := testenv.AMQPURL(t)
	topo := Topology{Prefix: testenv.UniqueName("ot-limit"), Mode: ModeLadder, Tiers: firstTier + 1, DeliveryLimit: 2}
	ch := testenv.AMQPChannel(t, url)
	if err := topo.Declare(ch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(url, topo.Delete) })
	p := NewPublisher(url, topo)
	defer p.Close()
	if err := p.Publish(context.Background(), Message{ID: "m1", Type: "t", Subject: "o1", DueAt: time.Now(), Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for returns := 0; ; {
		// Checked on every round, however the broker answers: a broker that
		// does not count the returns would hand the message back forever.
		if time.Now().After(deadline) || returns > 50 {
			t.Fatalf("after %d returns the message is neither dead-lettered nor dropped: it loops", returns)
		}
		d, ok, err := ch.Get(topo.DueQueue(), false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			returns++
			// As the relay gives a message back (relay.acker.requeue).
			if err := d.Reject(true); err != nil {
				t.Fatal(err)
			}
			continue
		}
		dead, ok, err := ch.Get(topo.DeadQueue(), true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			m, err := FromDelivery(dead)
			if err != nil || m.ID != "m1" || !strings.Contains(m.Reason, "delivery_limit") {
				t.Fatalf("dead letter %+v (%v), want m1 with the broker's delivery_limit reason", m, err)
			}
			if returns < 2 {
				t.Fatalf("dead-lettered after %d returns, limit 2", returns)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d returns the message is neither in %s nor in %s: dropped", returns, topo.DueQueue(), topo.DeadQueue())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
