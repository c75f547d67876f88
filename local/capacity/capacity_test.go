package capacity

import (
	"os"
	"testing"
	"time"
)

// TestCapacityDocMatchesTheModel: every generated table of
// docs/capacity.md is what the model prints today.
func TestCapacityDocMatchesTheModel(t *testing.T) {
	data, err := os.ReadFile("../../docs/capacity.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Render(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if want != string(data) {
		t.Fatal("docs/capacity.md is not what the model prints: run go run ./local/cmd/capacity -write-doc docs/capacity.md")
	}
}

// The ladder's tiers per timer come from the topology's routing: a short
// timer passes one tier; longer ones more, never fewer.
func TestTimerMessages(t *testing.T) {
	if tiers, hops := TimerMessages(2 * time.Second); tiers != 0 || hops != 0 {
		t.Errorf("2 s: %d tiers %d hops, want none (held in the relay)", tiers, hops)
	}
	if tiers, hops := TimerMessages(10 * time.Second); tiers != 1 || hops != 0 {
		t.Errorf("10 s: %d tiers %d hops, want 1 and 0", tiers, hops)
	}
	last := 0
	for _, d := range []time.Duration{time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour, 30 * 24 * time.Hour} {
		tiers, _ := TimerMessages(d)
		if tiers < last {
			t.Errorf("%v: %d tiers, fewer than a shorter timeout's %d", d, tiers, last)
		}
		last = tiers
	}
}

// More orders never cost less; the floor does not move with them.
func TestBillGrowsWithOrders(t *testing.T) {
	prev, prevFloor := -1.0, -1.0
	for _, n := range []float64{0, 1e5, 1e6, 1e7, 1e8} {
		total, floor := Total(Bill(Default, DefaultMix, n))
		if total < prev || (prevFloor >= 0 && floor != prevFloor) {
			t.Fatalf("%g orders: total %v (before %v), floor %v (before %v)", n, total, prev, floor, prevFloor)
		}
		prev, prevFloor = total, floor
	}
}
