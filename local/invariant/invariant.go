// Package invariant checks that stock and money are conserved and every
// order ended in exactly one state. Tests and the load tool run it after
// the system is quiet.
package invariant

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// Initial is what the seed put in.
type Initial struct {
	Stock   map[string]int64 // item id → stock
	Balance map[string]int64 // user id → balance
}

// Result is the outcome of a check.
type Result struct {
	Violations []string
	Orders     map[domain.OrderStatus]int
}

// OK reports whether no invariant was violated.
func (r Result) OK() bool { return len(r.Violations) == 0 }

func (r Result) String() string {
	if r.OK() {
		return fmt.Sprintf("invariants hold (orders: %d PAID, %d CANCELLED, %d UNPAID)", r.Orders[domain.OrderPaid], r.Orders[domain.OrderCancelled], r.Orders[domain.OrderUnpaid])
	}
	return fmt.Sprintf("%d invariant violations, first: %s", len(r.Violations), r.Violations[0])
}

// Check verifies, at now, with grace after deadlines:
//   - every item: initial stock = stock (Σ over its shards) + Σ quantities of
//     UNPAID and PAID orders = stock + Σ quantities of live (not RESTORED)
//     reservations, and no shard below zero;
//   - every user: initial balance = balance + Σ amounts of SUCCESS pay orders;
//   - no order is both paid and cancelled; no SUCCESS pay order belongs to a
//     CANCELLED order; every PAID order has a SUCCESS pay order;
//   - no UNPAID order is past its deadline + grace;
//   - no reservation is still waiting for its order (a create in flight).
func Check(ctx context.Context, s *store.Store, init Initial, now time.Time, grace time.Duration) (Result, error) {
	res := Result{Orders: map[domain.OrderStatus]int{}}
	bad := func(format string, args ...any) {
		res.Violations = append(res.Violations, fmt.Sprintf(format, args...))
	}
	items, err := s.AllItems(ctx)
	if err != nil {
		return res, err
	}
	orders, err := s.AllOrders(ctx)
	if err != nil {
		return res, err
	}
	pays, err := s.AllPayOrders(ctx)
	if err != nil {
		return res, err
	}
	wallets, err := s.AllWallets(ctx)
	if err != nil {
		return res, err
	}
	reservations, err := s.AllReservations(ctx)
	if err != nil {
		return res, err
	}
	payOf := map[string]domain.PayOrder{}
	for _, p := range pays {
		payOf[p.BizOrderNo] = p
	}
	held := map[string]int64{}
	status := map[string]domain.OrderStatus{}
	for _, o := range orders {
		res.Orders[o.Status]++
		status[o.ID] = o.Status
		if !o.PaidAt.IsZero() && !o.CancelledAt.IsZero() {
			bad("order %s has both paidAt and cancelledAt", o.ID)
		}
		switch o.Status {
		case domain.OrderUnpaid, domain.OrderPaid:
			for _, l := range o.Items {
				held[l.ItemID] += l.Quantity
			}
		}
		p, hasPay := payOf[o.ID]
		if o.Status == domain.OrderPaid && (!hasPay || p.Status != domain.PaySuccess) {
			bad("order %s is PAID without a SUCCESS pay order", o.ID)
		}
		if o.Status == domain.OrderCancelled && hasPay && p.Status == domain.PaySuccess {
			bad("order %s is CANCELLED but its pay order is SUCCESS", o.ID)
		}
		if o.Status == domain.OrderUnpaid && now.After(o.Deadline.Add(grace)) {
			bad("order %s is UNPAID %v after its deadline", o.ID, now.Sub(o.Deadline).Round(time.Millisecond))
		}
	}
	live := map[string]int64{}
	for _, r := range reservations {
		if r.State == domain.Reserved {
			bad("reservation %s still waits for its order (created %v)", r.OrderID, r.CreatedAt)
		}
		if r.State != domain.Restored {
			for _, l := range r.Lines {
				live[l.ItemID] += l.Quantity
			}
		}
	}
	stockOf := map[string]int64{}
	for _, it := range items {
		stockOf[it.ID] = it.Stock
		if it.Shards > 1 {
			shards, err := s.ItemShards(ctx, it.ID)
			if err != nil {
				return res, err
			}
			for k, n := range shards {
				if n < 0 {
					bad("item %s: shard %d holds %d", it.ID, k, n)
				}
			}
		}
	}
	for _, id := range sortedKeys(init.Stock) {
		if got := stockOf[id] + held[id]; got != init.Stock[id] {
			bad("item %s: stock %d + held by orders %d = %d, want %d", id, stockOf[id], held[id], got, init.Stock[id])
		}
		if got := stockOf[id] + live[id]; got != init.Stock[id] {
			bad("item %s: stock %d + held by live reservations %d = %d, want %d", id, stockOf[id], live[id], got, init.Stock[id])
		}
	}
	spent := map[string]int64{}
	for _, p := range pays {
		if p.Status == domain.PaySuccess {
			spent[p.UserID] += p.AmountCents
		}
	}
	balanceOf := map[string]int64{}
	for _, w := range wallets {
		balanceOf[w.UserID] = w.BalanceCents
	}
	for _, id := range sortedKeys(init.Balance) {
		if got := balanceOf[id] + spent[id]; got != init.Balance[id] {
			bad("user %s: balance %d + paid %d = %d, want %d", id, balanceOf[id], spent[id], got, init.Balance[id])
		}
	}
	return res, nil
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
