package store

import (
	"context"
	"fmt"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

func (s *Store) payRef(orderID string) *firestore.DocumentRef {
	return s.c.Collection(ColPayOrders).Doc(orderID)
}

func decodePayOrder(snap *firestore.DocumentSnapshot) (domain.PayOrder, error) {
	var d payOrderDoc
	if err := snap.DataTo(&d); err != nil {
		return domain.PayOrder{}, fmt.Errorf("decode pay order %q: %w", snap.Ref.ID, err)
	}
	return d.domain(snap.Ref.ID), nil
}

// PayOrder reads the pay order of a business order.
func (s *Store) PayOrder(ctx context.Context, orderID string) (domain.PayOrder, error) {
	snap, err := s.payRef(orderID).Get(ctx)
	if notFound(err) {
		return domain.PayOrder{}, fmt.Errorf("pay order for %q: %w", orderID, domain.ErrNotFound)
	}
	if err != nil {
		return domain.PayOrder{}, classify(err)
	}
	return decodePayOrder(snap)
}

// txPayOrder reads orderID's pay order inside t; found is false when there
// is none yet.
func (s *Store) txPayOrder(t *firestore.Transaction, orderID string) (domain.PayOrder, bool, error) {
	snap, err := t.Get(s.payRef(orderID))
	if notFound(err) {
		return domain.PayOrder{}, false, nil
	}
	if err != nil {
		return domain.PayOrder{}, false, err
	}
	p, err := decodePayOrder(snap)
	return p, true, err
}

// Pay debits userID's wallet by the order's total and marks its pay order
// SUCCESS, in one transaction, only while the pay order is WAITING (or not
// yet opened) and the order is not cancelled. Paying again returns the same
// pay order with changed=false. Errors: domain.ErrNotFound (no such order of
// this user), domain.ErrOrderClosed (cancelled or pay order closed),
// domain.ErrInsufficientBalance (nothing debited, nothing written).
func (s *Store) Pay(ctx context.Context, orderID, userID, newPayOrderID string) (p domain.PayOrder, changed bool, err error) {
	unlock, err := s.locks.lock(ctx, "pay/"+orderID, "wallet/"+userID)
	if err != nil {
		return domain.PayOrder{}, false, fmt.Errorf("pay order %q: %w", orderID, err)
	}
	defer unlock()
	err = s.tx(ctx, func(t *firestore.Transaction) error {
		changed = false
		osnap, err := t.Get(s.orderRef(orderID))
		if notFound(err) {
			return fmt.Errorf("order %q: %w", orderID, domain.ErrNotFound)
		}
		if err != nil {
			return err
		}
		o, err := decodeOrder(osnap)
		if err != nil {
			return err
		}
		if o.UserID != userID {
			return fmt.Errorf("order %q of another user: %w", orderID, domain.ErrNotFound)
		}
		var found bool
		if p, found, err = s.txPayOrder(t, orderID); err != nil {
			return err
		}
		if !found {
			p = domain.NewPayOrder(newPayOrderID, o, s.now())
		}
		switch {
		case p.Status == domain.PaySuccess:
			return errNoChange
		case p.Status == domain.PayClosed || o.Status == domain.OrderCancelled:
			return fmt.Errorf("order %q: %w", orderID, domain.ErrOrderClosed)
		}
		wref := s.c.Collection(ColWallets).Doc(userID)
		wsnap, err := t.Get(wref)
		if err != nil && !notFound(err) {
			return err
		}
		w := domain.Wallet{UserID: userID}
		if wsnap.Exists() {
			var d walletDoc
			if err := wsnap.DataTo(&d); err != nil {
				return fmt.Errorf("decode wallet %q: %w", userID, err)
			}
			w.BalanceCents = d.BalanceCents
		}
		if err := w.Debit(p.AmountCents); err != nil {
			return fmt.Errorf("pay order %q: %w", orderID, err)
		}
		p.Succeed(s.now())
		changed = true
		if err := t.Set(wref, walletDoc{BalanceCents: w.BalanceCents}); err != nil {
			return err
		}
		return t.Set(s.payRef(orderID), toPayOrderDoc(p))
	})
	if err != nil {
		return domain.PayOrder{}, false, fmt.Errorf("pay order %q: %w", orderID, err)
	}
	return p, changed, nil
}

// ClosePayOrder moves orderID's pay order WAITING → CLOSED in one
// transaction; with no pay order yet it creates a CLOSED one, so a later Pay
// is refused. It returns the pay order as stored and what happened: Refused
// means a payment won the race (the pay order is SUCCESS).
func (s *Store) ClosePayOrder(ctx context.Context, orderID, newPayOrderID string) (domain.PayOrder, domain.Change, error) {
	unlock, err := s.locks.lock(ctx, "pay/"+orderID)
	if err != nil {
		return domain.PayOrder{}, 0, fmt.Errorf("close pay order %q: %w", orderID, err)
	}
	defer unlock()
	var (
		p      domain.PayOrder
		change domain.Change
	)
	err = s.tx(ctx, func(t *firestore.Transaction) error {
		var found bool
		var err error
		if p, found, err = s.txPayOrder(t, orderID); err != nil {
			return err
		}
		if !found {
			o := domain.Order{ID: orderID}
			osnap, err := t.Get(s.orderRef(orderID))
			if err != nil && !notFound(err) {
				return err
			}
			if osnap.Exists() {
				if o, err = decodeOrder(osnap); err != nil {
					return err
				}
			}
			p = domain.NewPayOrder(newPayOrderID, o, s.now())
		}
		if change = p.Close(s.now()); change != domain.Applied {
			return errNoChange
		}
		return t.Set(s.payRef(orderID), toPayOrderDoc(p))
	})
	if err != nil {
		return domain.PayOrder{}, 0, fmt.Errorf("close pay order %q: %w", orderID, err)
	}
	return p, change, nil
}
