package store

import (
	"context"
	"fmt"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Wallet reads a user's wallet; a user with none has a zero balance.
func (s *Store) Wallet(ctx context.Context, userID string) (domain.Wallet, error) {
	snap, err := s.c.Collection(ColWallets).Doc(userID).Get(ctx)
	if notFound(err) {
		return domain.Wallet{UserID: userID}, nil
	}
	if err != nil {
		return domain.Wallet{}, classify(err)
	}
	var d walletDoc
	if err := snap.DataTo(&d); err != nil {
		return domain.Wallet{}, fmt.Errorf("decode wallet %q: %w", userID, err)
	}
	return domain.Wallet{UserID: userID, BalanceCents: d.BalanceCents}, nil
}

// PutWallet creates or replaces a wallet (seeding).
func (s *Store) PutWallet(ctx context.Context, w domain.Wallet) error {
	_, err := s.c.Collection(ColWallets).Doc(w.UserID).Set(ctx, walletDoc{BalanceCents: w.BalanceCents})
	return classify(err)
}

func (s *Store) cartRef(userID string) *firestore.DocumentRef {
	return s.c.Collection(ColCarts).Doc(userID)
}

func decodeCart(userID string, snap *firestore.DocumentSnapshot) (domain.Cart, error) {
	c := domain.Cart{UserID: userID}
	if snap == nil || !snap.Exists() {
		return c, nil
	}
	var d cartDoc
	if err := snap.DataTo(&d); err != nil {
		return c, fmt.Errorf("decode cart %q: %w", userID, err)
	}
	for _, l := range d.Lines {
		c.Lines = append(c.Lines, domain.CartLine(l))
	}
	return c, nil
}

func toCartDoc(c domain.Cart) cartDoc {
	d := cartDoc{Lines: make([]cartLineDoc, len(c.Lines))}
	for i, l := range c.Lines {
		d.Lines[i] = cartLineDoc(l)
	}
	return d
}

// Cart reads a user's cart; a user with none has an empty cart.
func (s *Store) Cart(ctx context.Context, userID string) (domain.Cart, error) {
	snap, err := s.cartRef(userID).Get(ctx)
	if err != nil && !notFound(err) {
		return domain.Cart{}, classify(err)
	}
	return decodeCart(userID, snap)
}

// PutCart creates or replaces a cart (seeding).
func (s *Store) PutCart(ctx context.Context, c domain.Cart) error {
	_, err := s.cartRef(c.UserID).Set(ctx, toCartDoc(c))
	return classify(err)
}

// UpdateCart applies fn to userID's cart in one transaction and writes it
// only when fn reports a change; an error from fn changes nothing and is
// returned.
func (s *Store) UpdateCart(ctx context.Context, userID string, fn func(*domain.Cart) (bool, error)) (domain.Cart, error) {
	var c domain.Cart
	err := s.tx(ctx, func(t *firestore.Transaction) error {
		snap, err := t.Get(s.cartRef(userID))
		if err != nil && !notFound(err) {
			return err
		}
		if c, err = decodeCart(userID, snap); err != nil {
			return err
		}
		changed, err := fn(&c)
		if err != nil {
			return err
		}
		if !changed {
			return errNoChange
		}
		return t.Set(s.cartRef(userID), toCartDoc(c))
	})
	if err != nil {
		return domain.Cart{}, fmt.Errorf("update cart of %q: %w", userID, err)
	}
	return c, nil
}
