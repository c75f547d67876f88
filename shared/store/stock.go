package store

import (
	"context"
	"fmt"
	"slices"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Item reads one catalog item.
func (s *Store) Item(ctx context.Context, id string) (domain.Item, error) {
	snap, err := s.c.Collection(ColItems).Doc(id).Get(ctx)
	if notFound(err) {
		return domain.Item{}, fmt.Errorf("item %q: %w", id, domain.ErrNotFound)
	}
	if err != nil {
		return domain.Item{}, classify(err)
	}
	var d itemDoc
	if err := snap.DataTo(&d); err != nil {
		return domain.Item{}, fmt.Errorf("decode item %q: %w", id, err)
	}
	return domain.Item{ID: id, Name: d.Name, PriceCents: d.PriceCents, Stock: d.Stock}, nil
}

// PutItem creates or replaces a catalog item (seeding).
func (s *Store) PutItem(ctx context.Context, it domain.Item) error {
	_, err := s.c.Collection(ColItems).Doc(it.ID).Set(ctx, itemDoc{Name: it.Name, PriceCents: it.PriceCents, Stock: it.Stock})
	return classify(err)
}

// getItems reads items by id inside a transaction. The ids are read in
// sorted order, so concurrent transactions lock shared items in the same
// order and cannot deadlock on each other.
func (s *Store) getItems(t *firestore.Transaction, ids []string) (map[string]*domain.Item, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	refs := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		refs[i] = s.c.Collection(ColItems).Doc(id)
	}
	snaps, err := t.GetAll(refs)
	if err != nil {
		return nil, err
	}
	items := make(map[string]*domain.Item, len(ids))
	for i, snap := range snaps {
		if !snap.Exists() {
			continue
		}
		var d itemDoc
		if err := snap.DataTo(&d); err != nil {
			return nil, fmt.Errorf("decode item %q: %w", ids[i], err)
		}
		items[ids[i]] = &domain.Item{ID: ids[i], Name: d.Name, PriceCents: d.PriceCents, Stock: d.Stock}
	}
	return items, nil
}

// Reserve deducts wants from stock for orderID, all or nothing, and records a
// reservation with the catalog prices. It is idempotent per orderID: a second
// call returns the first reservation's lines without taking more. If the
// order's reservation was already restored (a compensation overtook this
// deduct), it fails with domain.ErrOrderClosed and takes nothing.
func (s *Store) Reserve(ctx context.Context, orderID string, wants []domain.Want) ([]domain.OrderLine, error) {
	keys := []string{"reservation/" + orderID}
	for _, w := range wants {
		keys = append(keys, "item/"+w.ItemID)
	}
	unlock, err := s.locks.lock(ctx, keys...)
	if err != nil {
		return nil, fmt.Errorf("reserve stock for order %q: %w", orderID, err)
	}
	defer unlock()
	var lines []domain.OrderLine
	err = s.tx(ctx, func(t *firestore.Transaction) error {
		resRef := s.c.Collection(ColReservations).Doc(orderID)
		snap, err := t.Get(resRef)
		if err != nil && !notFound(err) {
			return err
		}
		if snap.Exists() {
			var d reservationDoc
			if err := snap.DataTo(&d); err != nil {
				return fmt.Errorf("decode reservation %q: %w", orderID, err)
			}
			if d.State == string(domain.Restored) {
				return fmt.Errorf("reservation for order %q was already given back: %w", orderID, domain.ErrOrderClosed)
			}
			lines = fromLineDocs(d.Lines)
			return errNoChange
		}
		ids := make([]string, len(wants))
		for i, w := range wants {
			ids[i] = w.ItemID
		}
		items, err := s.getItems(t, ids)
		if err != nil {
			return err
		}
		for _, w := range wants {
			if _, ok := items[w.ItemID]; !ok {
				return fmt.Errorf("item %q: %w", w.ItemID, domain.ErrUnknownItem)
			}
		}
		lines, err = domain.Reserve(items, wants)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := t.Update(s.c.Collection(ColItems).Doc(id), []firestore.Update{{Path: "stock", Value: items[id].Stock}}); err != nil {
				return err
			}
		}
		return t.Create(resRef, toReservationDoc(domain.Reservation{OrderID: orderID, Lines: lines, State: domain.Reserved, CreatedAt: s.now()}))
	})
	if err != nil {
		return nil, fmt.Errorf("reserve stock for order %q: %w", orderID, err)
	}
	return lines, nil
}

// Restore gives back exactly what orderID's reservation took, at most once.
// A restore for an order with no reservation leaves a RESTORED tombstone, so
// a deduct that arrives later (a retried saga step) takes nothing.
//
// With onlyIfNoOrder (saga compensation, orphan release) it gives nothing
// back while an order with this id exists and is not cancelled, checked in
// the same transaction: a create whose commit was reported as failed but
// went through keeps its stock.
func (s *Store) Restore(ctx context.Context, orderID string, onlyIfNoOrder bool) (domain.Change, error) {
	// Learn the items first (a reservation's lines never change), so the
	// in-process locks cover them.
	keys := []string{"reservation/" + orderID}
	if r, err := s.Reservation(ctx, orderID); err == nil {
		for _, l := range r.Lines {
			keys = append(keys, "item/"+l.ItemID)
		}
	}
	unlock, err := s.locks.lock(ctx, keys...)
	if err != nil {
		return domain.NoOp, fmt.Errorf("restore stock for order %q: %w", orderID, err)
	}
	defer unlock()
	change := domain.NoOp
	err = s.tx(ctx, func(t *firestore.Transaction) error {
		change = domain.NoOp
		if onlyIfNoOrder {
			osnap, err := t.Get(s.orderRef(orderID))
			if err != nil && !notFound(err) {
				return err
			}
			if osnap.Exists() {
				o, err := decodeOrder(osnap)
				if err != nil {
					return err
				}
				if o.Status != domain.OrderCancelled {
					change = domain.Refused
					return errNoChange
				}
			}
		}
		resRef := s.c.Collection(ColReservations).Doc(orderID)
		snap, err := t.Get(resRef)
		if notFound(err) {
			change = domain.Applied
			return t.Create(resRef, toReservationDoc(domain.Reservation{OrderID: orderID, State: domain.Restored, CreatedAt: s.now(), RestoredAt: s.now()}))
		}
		if err != nil {
			return err
		}
		var d reservationDoc
		if err := snap.DataTo(&d); err != nil {
			return fmt.Errorf("decode reservation %q: %w", orderID, err)
		}
		r := d.domain(orderID)
		if r.State == domain.Restored {
			return errNoChange
		}
		ids := make([]string, len(r.Lines))
		for i, l := range r.Lines {
			ids[i] = l.ItemID
		}
		items, err := s.getItems(t, ids)
		if err != nil {
			return err
		}
		change = r.Restore(items, s.now())
		for id, it := range items {
			if err := t.Update(s.c.Collection(ColItems).Doc(id), []firestore.Update{{Path: "stock", Value: it.Stock}}); err != nil {
				return err
			}
		}
		return t.Set(resRef, toReservationDoc(r))
	})
	if err != nil {
		return domain.NoOp, fmt.Errorf("restore stock for order %q: %w", orderID, err)
	}
	return change, nil
}

// Reservation reads orderID's reservation.
func (s *Store) Reservation(ctx context.Context, orderID string) (domain.Reservation, error) {
	snap, err := s.c.Collection(ColReservations).Doc(orderID).Get(ctx)
	if notFound(err) {
		return domain.Reservation{}, fmt.Errorf("reservation %q: %w", orderID, domain.ErrNotFound)
	}
	if err != nil {
		return domain.Reservation{}, classify(err)
	}
	var d reservationDoc
	if err := snap.DataTo(&d); err != nil {
		return domain.Reservation{}, fmt.Errorf("decode reservation %q: %w", orderID, err)
	}
	return d.domain(orderID), nil
}
