package domain

import "time"

// Item is a catalog entry with its available stock.
type Item struct {
	ID         string
	Name       string
	PriceCents int64
	Stock      int64 // available, summed over its shards
	Shards     int   // K: how many documents hold its stock (0 or 1: the item's own)
	// MaxPerShopper caps one shopper's units of the item in UNPAID and
	// PAID orders; 0: no limit.
	MaxPerShopper int64
}

// Stock sharding bounds. One document sustains about one write per second
// in Firestore, so an item's stock may be spread over K shard documents;
// K = 1 keeps it on the item itself.
const (
	DefaultShards = 1
	MaxShards     = 100
)

// ShardCount is the item's K, at least 1.
func (it Item) ShardCount() int { return max(it.Shards, 1) }

// CheckShards refuses a K outside 1..MaxShards (0 means the default).
func CheckShards(field string, k int) error {
	if k < 0 || k > MaxShards {
		return Invalidf("%s: shards must be between 1 and %d", field, MaxShards)
	}
	return nil
}

// Spread divides stock over k shards as evenly as it goes: the first
// stock%k shards get one unit more.
func Spread(stock int64, k int) []int64 {
	k = max(k, 1)
	out := make([]int64, k)
	for i := range out {
		out[i] = stock / int64(k)
		if int64(i) < stock%int64(k) {
			out[i]++
		}
	}
	return out
}

// ShardFor is where units a reservation took from shard `recorded` go back
// to when the item now has k shards: the same shard while it exists (a
// re-seed may have changed k meanwhile).
func ShardFor(recorded, k int) int {
	if k <= 1 || recorded < 0 {
		return 0
	}
	return recorded % k
}

// Want is a requested quantity of one item.
type Want struct {
	ItemID   string
	Quantity int64
}

// ItemIDs is the item id of each want, in order.
func ItemIDs(wants []Want) []string {
	ids := make([]string, len(wants))
	for i, w := range wants {
		ids[i] = w.ItemID
	}
	return ids
}

// Take is what one reservation took from one shard of one item.
type Take struct {
	ItemID   string
	Shard    int
	Quantity int64
}

// ReservationState is the life cycle of a stock reservation:
// RESERVED → ORDERED (its order was written) → RESTORED, or RESERVED →
// RESTORED (the create failed, or the order was cancelled).
type ReservationState string

const (
	Reserved ReservationState = "RESERVED"
	Ordered  ReservationState = "ORDERED"
	Restored ReservationState = "RESTORED"
)

// Reservation remembers exactly what was taken from stock for one order,
// shard by shard, so a restore gives back exactly that, once. A reservation
// created by a restore that came first (a compensation that overtook its
// deduct) is RESTORED with no lines, and blocks any later deduct for that
// order.
type Reservation struct {
	OrderID    string
	Lines      []OrderLine
	Takes      []Take // empty on reservations made before shards: each line came from shard 0
	State      ReservationState
	CreatedAt  time.Time
	RestoredAt time.Time
}

// Reserve plans taking wants from items, all or nothing. items must hold
// every wanted item id (a missing one is ErrUnknownItem) and avail each
// item's available stock per shard. order(itemID)(n) gives the order in
// which the item's n shards are tried (a random permutation spreads orders
// over them); a want takes what it can from each in turn, spilling over to the
// next. A line or order total that does not fit in int64 cents is an
// *InvalidError (ErrAmountOverflow). On success avail is reduced and the
// priced lines (in the order of wants) and the takes are returned; on any
// error nothing is taken.
func Reserve(items map[string]*Item, avail map[string][]int64, wants []Want, order func(itemID string) func(n int) []int) ([]OrderLine, []Take, error) {
	lines := make([]OrderLine, 0, len(wants))
	for _, w := range wants {
		it, ok := items[w.ItemID]
		if !ok {
			return nil, nil, ErrUnknownItem
		}
		var sum int64
		for _, a := range avail[w.ItemID] {
			sum += max(a, 0)
		}
		if sum < w.Quantity {
			return nil, nil, ErrInsufficientStock
		}
		lines = append(lines, OrderLine{ItemID: w.ItemID, Quantity: w.Quantity, PriceCents: it.PriceCents})
	}
	if _, err := Total(lines); err != nil {
		return nil, nil, err
	}
	var takes []Take
	for _, w := range wants {
		a := avail[w.ItemID]
		need := w.Quantity
		for _, k := range order(w.ItemID)(len(a)) {
			if need == 0 {
				break
			}
			if q := min(max(a[k], 0), need); q > 0 {
				a[k] -= q
				need -= q
				takes = append(takes, Take{ItemID: w.ItemID, Shard: k, Quantity: q})
			}
		}
	}
	return lines, takes, nil
}

// Returned is what a restore of r gives back: its takes, or for a
// reservation recorded before shards, each line from shard 0.
func (r Reservation) Returned() []Take {
	if len(r.Takes) > 0 {
		return r.Takes
	}
	out := make([]Take, 0, len(r.Lines))
	for _, l := range r.Lines {
		out = append(out, Take{ItemID: l.ItemID, Quantity: l.Quantity})
	}
	return out
}

// Restore marks r RESTORED and returns what goes back to stock. A
// reservation already RESTORED gives nothing (NoOp).
func (r *Reservation) Restore(at time.Time) ([]Take, Change) {
	if r.State == Restored {
		return nil, NoOp
	}
	r.State = Restored
	r.RestoredAt = at.UTC()
	return r.Returned(), Applied
}
