package store_test

import (
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// TestUsageCountsWhatFirestoreBills: each operation's reads, writes and
// transactions are counted as Firestore bills them, by operation, from the
// calls the client really made to the emulator.
func TestUsageCountsWhatFirestoreBills(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	if err := s.PutItem(ctx, domain.Item{ID: "u1", Name: "U", PriceCents: 100, Stock: 5}); err != nil {
		t.Fatal(err)
	}
	before := s.Usage()
	if _, err := s.Item(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Order(ctx, "no-such-order"); err == nil {
		t.Fatal("a missing order was found")
	}
	// A query that finds nothing is billed one read; the sweep asks each
	// of its shards.
	if _, err := s.OverdueOrders(ctx, time.Now().Add(-time.Hour), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, "o-usage", []domain.Want{{ItemID: "u1", Quantity: 2}}); err != nil {
		t.Fatal(err)
	}
	after := s.Usage()
	diff := func(op string) store.Usage { return after[op].Sub(before[op]) }
	if u := diff("Item"); u.Reads < 1 || u.Writes != 0 {
		t.Errorf("Item: %+v, want reads and no writes", u)
	}
	if u := diff("Order"); u.Reads != 1 || u.Writes != 0 {
		t.Errorf("Order of a missing order: %+v, want 1 read", u)
	}
	if u := diff("OverdueOrders"); u.Reads != store.SweepShards {
		t.Errorf("OverdueOrders finding nothing: %+v, want %d reads (one per sweep shard)", u, store.SweepShards)
	}
	if u := diff("Reserve"); u.Transactions < 1 || u.Attempts < u.Transactions || u.Writes < 2 || u.Reads < 1 {
		t.Errorf("Reserve: %+v, want a transaction writing the stock and the reservation", u)
	}
	if _, ok := after["other"]; ok {
		t.Errorf("calls outside any store operation: %+v", after["other"])
	}
	total := store.TotalUsage(after).Sub(store.TotalUsage(before))
	if total.Writes != diff("Reserve").Writes {
		t.Errorf("writes outside Reserve: total %+v", total)
	}
}
