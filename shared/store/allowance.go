package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// ColShoppers holds one allowance document per shopper that has claimed
// one: the holds of its creates and the units of limited items its paid
// orders took (domain.Allowance). Only that shopper's creates write it, so
// it is never a flash sale's hot document.
const ColShoppers = "shoppers"

type holdDoc struct {
	Units     map[string]int64 `firestore:"units,omitempty"`
	CreatedAt time.Time        `firestore:"createdAt"`
}

type allowanceDoc struct {
	Holds     map[string]holdDoc `firestore:"holds"`
	PaidUnits map[string]int64   `firestore:"paidUnits"`
}

func (d allowanceDoc) domain() domain.Allowance {
	a := domain.Allowance{Holds: map[string]domain.Hold{}, PaidUnits: map[string]int64{}}
	for id, h := range d.Holds {
		a.Holds[id] = domain.Hold{OrderID: id, Units: h.Units, CreatedAt: h.CreatedAt.UTC()}
	}
	for id, n := range d.PaidUnits {
		a.PaidUnits[id] = n
	}
	return a
}

func toAllowanceDoc(a domain.Allowance) allowanceDoc {
	d := allowanceDoc{Holds: map[string]holdDoc{}, PaidUnits: map[string]int64{}}
	for id, h := range a.Holds {
		d.Holds[id] = holdDoc{Units: h.Units, CreatedAt: h.CreatedAt.UTC()}
	}
	for id, n := range a.PaidUnits {
		d.PaidUnits[id] = n
	}
	return d
}

func (s *Store) shopperRef(userID string) *firestore.DocumentRef {
	return s.c.Collection(ColShoppers).Doc(userID)
}

// Limits returns the maxPerShopper of each of ids that has one (a plain
// read; unknown items are left out).
func (s *Store) Limits(ctx context.Context, ids []string) (map[string]int64, error) {
	refs := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		refs[i] = s.itemRef(id)
	}
	snaps, err := s.c.GetAll(ctx, refs)
	if err != nil {
		return nil, classify(err)
	}
	items, err := decodeItems(snaps)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, it := range items {
		if it.MaxPerShopper > 0 {
			out[it.ID] = it.MaxPerShopper
		}
	}
	return out, nil
}

// ClaimAllowance records orderID's hold on userID's allowance, or refuses
// it (domain.ErrTooManyUnpaid, domain.ErrPurchaseLimit) changing nothing.
// It is idempotent per order. Before counting, it settles the holds whose
// orders were decided since (read from the orders and pay orders
// themselves, so deciding an order never has to write here; a payment
// counts as soon as Pay recorded it): a paid order's limited units stay,
// a cancelled one's go back, and a hold whose order can never be written
// (older than sagaBudget, its reservation given back or never made) is
// dropped. The write is a compare-and-set on the document's update time;
// a lost race reads again.
func (s *Store) ClaimAllowance(ctx context.Context, userID, orderID string, wants []domain.Want, limits map[string]int64, maxUnpaid int, sagaBudget time.Duration) error {
	return s.changeAllowance(ctx, userID, orderID, sagaBudget, func(a *domain.Allowance) (bool, error) {
		before := len(a.Holds) // Claim keeps an existing hold as it is
		err := a.Claim(orderID, wants, limits, maxUnpaid, s.now())
		return len(a.Holds) != before, err
	})
}

// ReleaseAllowance drops orderID's hold (its create failed and no order
// was written); a hold that is not there is no change.
func (s *Store) ReleaseAllowance(ctx context.Context, userID, orderID string) error {
	return s.changeAllowance(ctx, userID, orderID, 0, func(a *domain.Allowance) (bool, error) {
		return a.Release(orderID), nil
	})
}

// Allowance reads userID's allowance as stored (tests, tools).
func (s *Store) Allowance(ctx context.Context, userID string) (domain.Allowance, error) {
	snap, err := s.shopperRef(userID).Get(ctx)
	if notFound(err) {
		return allowanceDoc{}.domain(), nil
	}
	if err != nil {
		return domain.Allowance{}, classify(err)
	}
	var d allowanceDoc
	if err := snap.DataTo(&d); err != nil {
		return domain.Allowance{}, fmt.Errorf("decode allowance of %q: %w", userID, err)
	}
	return d.domain(), nil
}

// changeAllowance runs change on userID's allowance by compare-and-set.
// With sagaBudget > 0 it first settles the holds of other orders (see
// ClaimAllowance). Within one process, a shopper's changes queue for its
// document instead of losing races to each other.
func (s *Store) changeAllowance(ctx context.Context, userID, orderID string, sagaBudget time.Duration, change func(*domain.Allowance) (bool, error)) error {
	unlock, err := s.locks.lock(ctx, "shopper/"+userID)
	if err != nil {
		return err
	}
	defer unlock()
	ref := s.shopperRef(userID)
	for round := 0; ; round++ {
		snap, err := ref.Get(ctx)
		if err != nil && !notFound(err) {
			return classify(err)
		}
		var d allowanceDoc
		if snap.Exists() {
			if err := snap.DataTo(&d); err != nil {
				return fmt.Errorf("decode allowance of %q: %w", userID, err)
			}
		}
		a := d.domain()
		settled := false
		if sagaBudget > 0 {
			if settled, err = s.settleHolds(ctx, &a, orderID, sagaBudget); err != nil {
				return err
			}
		}
		changed, cerr := change(&a)
		if cerr != nil && !settled {
			return cerr
		}
		if !changed && !settled {
			return nil
		}
		// A refusal still keeps what was settled; the hold refused is not in a.
		err = s.tx(ctx, func(t *firestore.Transaction) error {
			if !snap.Exists() {
				return t.Create(ref, toAllowanceDoc(a))
			}
			nd := toAllowanceDoc(a)
			return t.Update(ref, []firestore.Update{{Path: "holds", Value: nd.Holds}, {Path: "paidUnits", Value: nd.PaidUnits}}, firestore.LastUpdateTime(snap.UpdateTime))
		})
		if err == nil {
			return cerr
		}
		if again, err := s.lostRace(ctx, err, round); !again {
			return err
		}
	}
}

// settleHolds settles every hold but orderID's whose order was decided,
// or can never be written, and reports whether any was.
func (s *Store) settleHolds(ctx context.Context, a *domain.Allowance, orderID string, sagaBudget time.Duration) (bool, error) {
	var ids []string
	for id := range a.Holds {
		if id != orderID {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return false, nil
	}
	refs := make([]*firestore.DocumentRef, 0, 3*len(ids))
	for _, id := range ids {
		refs = append(refs, s.orderRef(id), s.reservationRef(id), s.payRef(id))
	}
	snaps, err := s.c.GetAll(ctx, refs)
	if err != nil {
		return false, classify(err)
	}
	settled := false
	for i, id := range ids {
		osnap, rsnap, psnap := snaps[3*i], snaps[3*i+1], snaps[3*i+2]
		fate := domain.HoldLive
		switch {
		case psnap.Exists() && psnap.Data()["status"] == string(domain.PaySuccess):
			// Paid: the order becomes PAID once the announcement lands.
			fate = domain.HoldPaid
		case osnap.Exists():
			o, err := decodeOrder(osnap)
			if err != nil {
				return false, err
			}
			switch o.Status {
			case domain.OrderPaid:
				fate = domain.HoldPaid
			case domain.OrderCancelled:
				fate = domain.HoldCancelled
			}
		case s.now().Sub(a.Holds[id].CreatedAt) > sagaBudget:
			// No order, and its create has had its whole budget: the
			// order can only still be written while its reservation is
			// live (CreateOrder's transaction checks it).
			state := ""
			if rsnap.Exists() {
				var rd reservationDoc
				if err := rsnap.DataTo(&rd); err != nil {
					return false, err
				}
				state = rd.State
			}
			if state != string(domain.Reserved) && state != string(domain.Ordered) {
				fate = domain.HoldCancelled
			}
		}
		if a.Settle(id, fate) {
			settled = true
		}
	}
	return settled, nil
}
