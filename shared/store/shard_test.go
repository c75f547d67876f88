package store_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

func mustShards(t *testing.T, s *store.Store, id string) []int64 {
	t.Helper()
	got, err := s.ItemShards(ctxT(t), id)
	if err != nil {
		t.Fatalf("shards of %s: %v", id, err)
	}
	return got
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// 60 orders of 2 units from 3 instances on an item of 50 units over 8
// shards: exactly 25 succeed, each from whichever shards had units, and
// shards + reserved = 50 with no shard below zero. Once it is sold out, a
// create is refused from a read, with no transaction.
func TestShardedReserveNoOversell(t *testing.T) {
	t.Parallel()
	s, project := testenv.Store(t)
	instances := []*store.Store{s, testenv.StoreOn(t, project), testenv.StoreOn(t, project)}
	ctx := ctxT(t)
	const initial, orders, each = 50, 60, 2
	if err := s.PutItem(ctx, domain.Item{ID: "hot", Name: "Hot", PriceCents: 1, Stock: initial, Shards: 8}); err != nil {
		t.Fatal(err)
	}
	if got := mustShards(t, s, "hot"); !slices.Equal(got, domain.Spread(initial, 8)) {
		t.Fatalf("seeded shards %v", got)
	}
	var wg sync.WaitGroup
	errs := make([]error, orders)
	for i := range orders {
		wg.Go(func() {
			_, errs[i] = instances[i%len(instances)].Reserve(ctx, fmt.Sprintf("o%d", i), []domain.Want{{ItemID: "hot", Quantity: each}})
		})
	}
	wg.Wait()
	ok, short := 0, 0
	var reserved int64
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			r, rerr := s.Reservation(ctx, fmt.Sprintf("o%d", i))
			if rerr != nil {
				t.Fatal(rerr)
			}
			var took int64
			for _, tk := range r.Takes {
				took += tk.Quantity
			}
			if took != each || r.Lines[0].Quantity != each {
				t.Fatalf("order %d: takes %v for lines %v", i, r.Takes, r.Lines)
			}
			reserved += took
		case errors.Is(err, domain.ErrInsufficientStock):
			short++
		default:
			t.Errorf("order %d: unexpected error %v", i, err)
		}
	}
	shards := mustShards(t, s, "hot")
	for k, n := range shards {
		if n < 0 {
			t.Fatalf("shard %d at %d", k, n)
		}
	}
	if sum(shards)+reserved != initial || mustItem(t, s, "hot").Stock != sum(shards) {
		t.Fatalf("shards %v + reserved %d != %d", shards, reserved, initial)
	}
	if ok != initial/each || short != orders-initial/each {
		t.Fatalf("ok=%d short=%d", ok, short)
	}
	var conflicts int64
	for _, in := range instances {
		conflicts += in.Stats().StockConflicts
	}
	t.Logf("%d compare-and-set conflicts over %d orders", conflicts, orders)
	before := s.Stats().Transactions
	if _, err := s.Reserve(ctx, "late", []domain.Want{{ItemID: "hot", Quantity: 1}}); !errors.Is(err, domain.ErrInsufficientStock) {
		t.Fatalf("sold out: %v", err)
	}
	if n := s.Stats().Transactions - before; n != 0 {
		t.Fatalf("a sold-out refusal ran %d transactions", n)
	}
}

// An order larger than any one shard takes from several; its restore puts
// every unit back where it came from, and only once however often it is
// delivered, from however many instances at once.
func TestReservationSpansShardsAndRestoresOnce(t *testing.T) {
	t.Parallel()
	s, project := testenv.Store(t)
	ctx := ctxT(t)
	if err := s.PutItem(ctx, domain.Item{ID: "x", Name: "X", PriceCents: 3, Stock: 8, Shards: 4}); err != nil {
		t.Fatal(err)
	}
	lines, err := s.Reserve(ctx, "big", []domain.Want{{ItemID: "x", Quantity: 7}})
	if err != nil || lines[0].Quantity != 7 || lines[0].PriceCents != 3 {
		t.Fatalf("reserve: %v %v", lines, err)
	}
	r, err := s.Reservation(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Takes) != 4 {
		t.Fatalf("7 of 4×2 units should come from all 4 shards: %v", r.Takes)
	}
	if got := mustShards(t, s, "x"); sum(got) != 1 {
		t.Fatalf("after reserving 7 of 8: %v", got)
	}
	// The same order again takes nothing more.
	if again, err := s.Reserve(ctx, "big", []domain.Want{{ItemID: "x", Quantity: 7}}); err != nil || !slices.Equal(again, lines) {
		t.Fatalf("repeat: %v %v", again, err)
	}
	instances := []*store.Store{s, testenv.StoreOn(t, project), testenv.StoreOn(t, project)}
	var wg sync.WaitGroup
	applied := make([]domain.Change, 9)
	for i := range applied {
		wg.Go(func() {
			c, err := instances[i%3].Restore(ctx, "big", false)
			if err != nil {
				t.Errorf("restore %d: %v", i, err)
			}
			applied[i] = c
		})
	}
	wg.Wait()
	n := 0
	for _, c := range applied {
		if c == domain.Applied {
			n++
		}
	}
	if got := mustShards(t, s, "x"); n != 1 || !slices.Equal(got, []int64{2, 2, 2, 2}) {
		t.Fatalf("%d restores applied; shards %v, want [2 2 2 2]", n, got)
	}
}

// A re-seed changes an item's shard count while orders hold its units:
// their restores give back exactly what they took, to the shards the new
// layout has, on top of the new stock.
func TestRestoreAfterReseed(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	if err := s.PutItem(ctx, domain.Item{ID: "x", Name: "X", PriceCents: 1, Stock: 16, Shards: 8}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := s.Reserve(ctx, fmt.Sprintf("o%d", i), []domain.Want{{ItemID: "x", Quantity: 3}}); err != nil {
			t.Fatal(err)
		}
	}
	// 8 → 3 shards with 30 units; then to a single document with 5.
	if err := s.PutItem(ctx, domain.Item{ID: "x", Name: "X", PriceCents: 1, Stock: 30, Shards: 3}); err != nil {
		t.Fatal(err)
	}
	if got := mustShards(t, s, "x"); !slices.Equal(got, []int64{10, 10, 10}) {
		t.Fatalf("re-seeded shards %v", got)
	}
	for i := range 2 {
		if _, err := s.Restore(ctx, fmt.Sprintf("o%d", i), false); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustItem(t, s, "x"); got.Stock != 36 || got.Shards != 3 {
		t.Fatalf("after 2 restores on 3 shards: %+v", got)
	}
	if err := s.PutItem(ctx, domain.Item{ID: "x", Name: "X", PriceCents: 1, Stock: 5}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // o0 and o1 again: no-ops
		if _, err := s.Restore(ctx, fmt.Sprintf("o%d", i), false); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustItem(t, s, "x"); got.Stock != 11 || got.Shards != 1 {
		t.Fatalf("after all restores on one document: %+v", got)
	}
	// The old shard documents are gone: reserving from one document works.
	if _, err := s.Reserve(ctx, "after", []domain.Want{{ItemID: "x", Quantity: 11}}); err != nil {
		t.Fatal(err)
	}
	if got := mustItem(t, s, "x"); got.Stock != 0 {
		t.Fatalf("left %d", got.Stock)
	}
	if err := s.PutItem(ctx, domain.Item{ID: "x", Shards: domain.MaxShards + 1}); err == nil {
		t.Fatal("a shard count over the limit was accepted")
	}
}

// Orders batched together on a sharded item keep their single-order
// outcomes: a repeated deduct (the same order twice in flight, from two
// instances) takes once and both calls get the same lines; a deduct after
// its order's restore takes nothing (ErrOrderClosed).
func TestBatchedReservesKeepEachOrdersOutcome(t *testing.T) {
	t.Parallel()
	s, project := testenv.Store(t)
	other := testenv.StoreOn(t, project)
	ctx := ctxT(t)
	if err := s.PutItem(ctx, domain.Item{ID: "x", Name: "X", PriceCents: 5, Stock: 100, Shards: 4}); err != nil {
		t.Fatal(err)
	}
	mustItem(t, s, "x") // both instances now know the item is sharded
	mustItem(t, other, "x")
	if _, err := s.Restore(ctx, "closed", false); err != nil {
		t.Fatal(err)
	}
	const orders = 15
	var wg sync.WaitGroup
	got := make([][2][]domain.OrderLine, orders)
	for i := range orders {
		for j, in := range []*store.Store{s, other} {
			wg.Go(func() {
				lines, err := in.Reserve(ctx, fmt.Sprintf("o%d", i), []domain.Want{{ItemID: "x", Quantity: 1}})
				if err != nil {
					t.Errorf("order %d call %d: %v", i, j, err)
				}
				got[i][j] = lines
			})
		}
	}
	var closedErr error
	wg.Go(func() { _, closedErr = s.Reserve(ctx, "closed", []domain.Want{{ItemID: "x", Quantity: 1}}) })
	wg.Wait()
	if !errors.Is(closedErr, domain.ErrOrderClosed) {
		t.Fatalf("deduct after restore: %v", closedErr)
	}
	for i, g := range got {
		if !slices.Equal(g[0], g[1]) || len(g[0]) != 1 || g[0][0].PriceCents != 5 {
			t.Fatalf("order %d: %v vs %v", i, g[0], g[1])
		}
	}
	if st := mustItem(t, s, "x").Stock; st != 100-orders {
		t.Fatalf("stock %d, want %d", st, 100-orders)
	}
}
