package domain

import "time"

// Item is a catalog entry with its available stock.
type Item struct {
	ID         string
	Name       string
	PriceCents int64
	Stock      int64
}

// Want is a requested quantity of one item.
type Want struct {
	ItemID   string
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

// Reservation remembers exactly what was taken from stock for one order, so a
// restore gives back exactly that, once. A reservation created by a restore
// that came first (a compensation that overtook its deduct) is RESTORED with
// no lines, and blocks any later deduct for that order.
type Reservation struct {
	OrderID    string
	Lines      []OrderLine
	State      ReservationState
	CreatedAt  time.Time
	RestoredAt time.Time
}

// Reserve takes wants from items, all or nothing. items must hold every
// wanted item id; a missing one is ErrUnknownItem. A line or order total
// that does not fit in int64 cents is an *InvalidError (ErrAmountOverflow).
// On success the items' stock is reduced and the priced lines are returned
// in the order of wants; on any error nothing is taken.
func Reserve(items map[string]*Item, wants []Want) ([]OrderLine, error) {
	lines := make([]OrderLine, 0, len(wants))
	for _, w := range wants {
		it, ok := items[w.ItemID]
		if !ok {
			return nil, ErrUnknownItem
		}
		if it.Stock < w.Quantity {
			return nil, ErrInsufficientStock
		}
		lines = append(lines, OrderLine{ItemID: w.ItemID, Quantity: w.Quantity, PriceCents: it.PriceCents})
	}
	if _, err := Total(lines); err != nil {
		return nil, err
	}
	for _, w := range wants {
		items[w.ItemID].Stock -= w.Quantity
	}
	return lines, nil
}

// Restore gives a reservation's lines back to items (which must hold every
// line's item) and marks it RESTORED. A reservation already RESTORED is a no-op.
func (r *Reservation) Restore(items map[string]*Item, at time.Time) Change {
	if r.State == Restored {
		return NoOp
	}
	for _, l := range r.Lines {
		if it, ok := items[l.ItemID]; ok {
			it.Stock += l.Quantity
		}
	}
	r.State = Restored
	r.RestoredAt = at.UTC()
	return Applied
}
