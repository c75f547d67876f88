package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// The sweeper's queries run once per sweep shard; paging through them
// still finds every overdue order and every orphaned reservation exactly
// once, oldest first, and no page holds more than asked for.
func TestSweepQueriesFindEveryShard(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	const n, page = 40, 7
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range n {
		id := fmt.Sprintf("o%02d", i)
		reserve(t, s, id)
		// Deadlines in reverse of creation, so the order of ids says nothing.
		o, _ := domain.NewOrder(id, "u", []domain.OrderLine{{ItemID: "x", Quantity: 1, PriceCents: 1}}, base, base.Add(time.Duration(n-i)*time.Second))
		if _, _, err := s.CreateOrder(ctx, o); err != nil {
			t.Fatal(err)
		}
		reserve(t, s, "r"+id) // an orphan: no order follows
	}
	seen := map[string]bool{}
	var last time.Time
	for pages := 0; len(seen) < n; pages++ {
		if pages > n {
			t.Fatalf("paging does not end: %d of %d found", len(seen), n)
		}
		got, err := s.OverdueOrders(ctx, time.Now(), page)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || len(got) > page {
			t.Fatalf("page of %d with %d of %d found", len(got), len(seen), n)
		}
		for _, o := range got {
			if seen[o.ID] || o.Deadline.Before(last) {
				t.Fatalf("%s again or out of order (deadline %v after %v)", o.ID, o.Deadline, last)
			}
			seen[o.ID], last = true, o.Deadline
			if _, _, err := s.UpdateOrder(ctx, o.ID, func(o *domain.Order) domain.Change { return o.Cancel(time.Now(), domain.CancelPaymentTimeout) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, err := s.OverdueOrders(ctx, time.Now(), page); err != nil || len(got) != 0 {
		t.Fatalf("after all: %d, %v", len(got), err)
	}
	orphans := map[string]bool{}
	for pages := 0; len(orphans) < n; pages++ {
		got, err := s.StaleReservations(ctx, time.Now().Add(time.Minute), page)
		if err != nil || len(got) == 0 || len(got) > page || pages > n {
			t.Fatalf("orphan page %d: %d (%v), %d found", pages, len(got), err, len(orphans))
		}
		for _, r := range got {
			if orphans[r.OrderID] || r.OrderID[0] != 'r' {
				t.Fatalf("orphan %s again or not an orphan", r.OrderID)
			}
			orphans[r.OrderID] = true
			if _, err := s.Restore(ctx, r.OrderID, true); err != nil {
				t.Fatal(err)
			}
		}
	}
}
