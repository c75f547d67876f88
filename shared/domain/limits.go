package domain

import (
	"errors"
	"fmt"
	"time"
)

// Limits that keep a flash sale for shoppers rather than hoarders: an item
// may cap the units one shopper holds in UNPAID and PAID orders
// (Item.MaxPerShopper), and a shopper may hold at most so many UNPAID
// orders at once. Both are checked when a create claims its allowance,
// before any stock is reserved.
var (
	ErrPurchaseLimit = errors.New("purchase limit reached")
	ErrTooManyUnpaid = errors.New("too many unpaid orders")
)

// MaxPerShopperLimit bounds an item's maxPerShopper.
const MaxPerShopperLimit = 1_000_000

// CheckMaxPerShopper refuses a per-shopper limit that is not a positive
// count (0: no limit).
func CheckMaxPerShopper(field string, n int64) error {
	if n < 0 || n > MaxPerShopperLimit {
		return Invalidf("%s: maxPerShopper must be between 1 and %d (absent: no limit)", field, MaxPerShopperLimit)
	}
	return nil
}

// Hold is what one create holds of its shopper's allowance: it counts as
// one unpaid order, and as its units of every limited item, until its
// order is decided (or never comes to be).
type Hold struct {
	OrderID string
	// Units of the limited items only (item id → quantity).
	Units     map[string]int64
	CreatedAt time.Time
}

// HoldFate is what became of a hold's order, as a claim finds it.
type HoldFate int

const (
	HoldLive      HoldFate = iota // the order is UNPAID, or its create may still write it
	HoldPaid                      // the order is PAID: its units stay, it is no longer unpaid
	HoldCancelled                 // the order was cancelled, or can never be written
)

// Allowance is one shopper's holds and the units of limited items their
// paid orders took.
type Allowance struct {
	Holds     map[string]Hold
	PaidUnits map[string]int64
}

// Settle applies what became of a hold's order: a cancelled order gives its
// units back, a paid one keeps them in PaidUnits. It reports whether the
// allowance changed.
func (a *Allowance) Settle(orderID string, fate HoldFate) bool {
	h, ok := a.Holds[orderID]
	if !ok || fate == HoldLive {
		return false
	}
	delete(a.Holds, orderID)
	if fate == HoldPaid {
		for id, n := range h.Units {
			if a.PaidUnits == nil {
				a.PaidUnits = map[string]int64{}
			}
			a.PaidUnits[id] += n
		}
	}
	return true
}

// Held is the shopper's units of itemID in live holds and paid orders.
func (a *Allowance) Held(itemID string) int64 {
	n := a.PaidUnits[itemID]
	for _, h := range a.Holds {
		n += h.Units[itemID]
	}
	return n
}

// Claim adds orderID's hold for wants, given each limited item's
// maxPerShopper (limits) and the cap on unpaid orders (maxUnpaid; 0: no
// cap). It is idempotent per order: an existing hold is kept as it is.
// A claim over the cap is ErrTooManyUnpaid; one that would take an item
// past its limit is ErrPurchaseLimit; either changes nothing.
func (a *Allowance) Claim(orderID string, wants []Want, limits map[string]int64, maxUnpaid int, now time.Time) error {
	if _, ok := a.Holds[orderID]; ok {
		return nil
	}
	if maxUnpaid > 0 && len(a.Holds) >= maxUnpaid {
		return fmt.Errorf("%w: %d unpaid orders held, at most %d", ErrTooManyUnpaid, len(a.Holds), maxUnpaid)
	}
	units := map[string]int64{}
	for _, w := range wants {
		lim, ok := limits[w.ItemID]
		if !ok || lim <= 0 {
			continue
		}
		if held := a.Held(w.ItemID); held+w.Quantity > lim {
			return fmt.Errorf("%w: item %q: %d held, %d asked, at most %d per shopper", ErrPurchaseLimit, w.ItemID, held, w.Quantity, lim)
		}
		units[w.ItemID] = w.Quantity
	}
	if a.Holds == nil {
		a.Holds = map[string]Hold{}
	}
	a.Holds[orderID] = Hold{OrderID: orderID, Units: units, CreatedAt: now.UTC()}
	return nil
}

// Release drops orderID's hold (its create failed before the order was
// written). It reports whether there was one.
func (a *Allowance) Release(orderID string) bool {
	return a.Settle(orderID, HoldCancelled)
}

// NeedsAllowance reports whether a create must claim an allowance at all:
// only with a cap on unpaid orders or a limited item among the wants.
func NeedsAllowance(wants []Want, limits map[string]int64, maxUnpaid int) bool {
	if maxUnpaid > 0 {
		return true
	}
	for _, w := range wants {
		if limits[w.ItemID] > 0 {
			return true
		}
	}
	return false
}
