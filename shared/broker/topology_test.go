package broker

import (
	"testing"
	"time"
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
