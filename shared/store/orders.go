package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// SetRetention makes every order decided from now on expire (Firestore's
// TTL policy on expireAt) d after its decision; 0 keeps orders forever.
func (s *Store) SetRetention(d time.Duration) { s.retention = d }

func (s *Store) orderRef(id string) *firestore.DocumentRef { return s.c.Collection(ColOrders).Doc(id) }

func decodeOrder(snap *firestore.DocumentSnapshot) (domain.Order, error) {
	var d orderDoc
	if err := snap.DataTo(&d); err != nil {
		return domain.Order{}, fmt.Errorf("decode order %q: %w", snap.Ref.ID, err)
	}
	return d.domain(snap.Ref.ID), nil
}

// CreateOrder stores o unless an order with its id exists; then it returns
// the stored one and created=false. Concurrent duplicates converge on one.
// The order is only created while its stock reservation is RESERVED: once a
// compensation or the sweeper gave the stock back, the order can never
// appear (domain.ErrOrderClosed), so no order lives without its stock.
func (s *Store) CreateOrder(ctx context.Context, o domain.Order) (stored domain.Order, created bool, err error) {
	ev := domain.Created(o) // recorded with the order, delivered after the commit
	ev.Source = sourceOf(ctx)
	err = s.tx(ctx, func(t *firestore.Transaction) error {
		created = false
		// The reservation first: while it is RESERVED no order of its id
		// can exist (writing one moves it on, in the same transaction), so
		// the order is read only when it is not — a create that ran before.
		rsnap, err := t.Get(s.reservationRef(o.ID))
		if err != nil && !notFound(err) {
			return err
		}
		var rd reservationDoc
		if rsnap.Exists() {
			if err := rsnap.DataTo(&rd); err != nil {
				return err
			}
		}
		if rd.State != string(domain.Reserved) {
			snap, err := t.Get(s.orderRef(o.ID))
			if err != nil && !notFound(err) {
				return err
			}
			if snap.Exists() {
				if stored, err = decodeOrder(snap); err != nil {
					return err
				}
				return errNoChange
			}
			return fmt.Errorf("order %q has no live stock reservation: %w", o.ID, domain.ErrOrderClosed)
		}
		// The reservation now belongs to a written order: the sweeper's
		// orphan query (state RESERVED, old) no longer finds it.
		if err := t.Update(rsnap.Ref, []firestore.Update{{Path: "state", Value: string(domain.Ordered)}}); err != nil {
			return err
		}
		stored, created = o, true
		if err := s.record(t, ev); err != nil {
			return err
		}
		return t.Create(s.orderRef(o.ID), toOrderDoc(o))
	})
	if err != nil {
		return domain.Order{}, false, fmt.Errorf("create order %q: %w", o.ID, err)
	}
	if created {
		s.deliver(ctx, ev)
	}
	return stored, created, nil
}

// Order reads one order.
func (s *Store) Order(ctx context.Context, id string) (domain.Order, error) {
	snap, err := s.orderRef(id).Get(ctx)
	if notFound(err) {
		return domain.Order{}, fmt.Errorf("order %q: %w", id, domain.ErrNotFound)
	}
	if err != nil {
		return domain.Order{}, classify(err)
	}
	return decodeOrder(snap)
}

// UpdateOrder applies fn to order id in one transaction and writes the result
// only when fn reports domain.Applied. It returns the order as stored after
// the call and what fn did.
func (s *Store) UpdateOrder(ctx context.Context, id string, fn func(*domain.Order) domain.Change) (domain.Order, domain.Change, error) {
	var (
		o      domain.Order
		change domain.Change
		ev     domain.Event
		hasEv  bool
	)
	err := s.tx(ctx, func(t *firestore.Transaction) error {
		hasEv = false
		snap, err := t.Get(s.orderRef(id))
		if notFound(err) {
			return fmt.Errorf("order %q: %w", id, domain.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if o, err = decodeOrder(snap); err != nil {
			return err
		}
		before := o
		if change = fn(&o); change != domain.Applied {
			return errNoChange
		}
		if ev, hasEv = domain.EventOf(before, o, s.now()); hasEv {
			ev.Source = sourceOf(ctx)
			if err := s.record(t, ev); err != nil {
				return err
			}
		}
		d := toOrderDoc(o)
		if o.Status != domain.OrderUnpaid && s.retention > 0 {
			d.ExpireAt = ts(s.now().Add(s.retention))
		}
		return t.Set(s.orderRef(id), d)
	})
	if err != nil {
		return domain.Order{}, 0, fmt.Errorf("update order %q: %w", id, err)
	}
	if hasEv {
		s.deliver(ctx, ev)
	}
	return o, change, nil
}
