package store

import (
	"context"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Whole-collection reads for tools (invariant checks, demo, load reports).
// They read everything: not for request paths.

// readAll reads every document of collection col through decode.
func readAll[T any](ctx context.Context, s *Store, col string, decode func(*firestore.DocumentSnapshot) (T, error)) ([]T, error) {
	docs, err := s.c.Collection(col).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]T, 0, len(docs))
	for _, d := range docs {
		v, err := decode(d)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// AllItems reads every item, its stock summed over its shards.
func (s *Store) AllItems(ctx context.Context) ([]domain.Item, error) {
	items, err := readAll(ctx, s, ColItems, decodeItem)
	if err != nil {
		return nil, err
	}
	var sharded []string
	for _, it := range items {
		if it.Shards > 1 {
			sharded = append(sharded, it.ID)
		}
	}
	if len(sharded) == 0 {
		return items, nil
	}
	views, _, err := s.readStock(ctx, sharded)
	if err != nil {
		return nil, err
	}
	for i, it := range items {
		if v, ok := views[it.ID]; ok && it.Shards > 1 {
			items[i].Stock = v.item.Stock
		}
	}
	return items, nil
}

// AllOrders reads every order.
func (s *Store) AllOrders(ctx context.Context) ([]domain.Order, error) {
	return readAll(ctx, s, ColOrders, decodeOrder)
}

// AllPayOrders reads every pay order.
func (s *Store) AllPayOrders(ctx context.Context) ([]domain.PayOrder, error) {
	return readAll(ctx, s, ColPayOrders, decodePayOrder)
}

// AllWallets reads every wallet.
func (s *Store) AllWallets(ctx context.Context) ([]domain.Wallet, error) {
	return readAll(ctx, s, ColWallets, func(d *firestore.DocumentSnapshot) (domain.Wallet, error) {
		var w walletDoc
		err := d.DataTo(&w)
		return domain.Wallet{UserID: d.Ref.ID, BalanceCents: w.BalanceCents}, err
	})
}

// AllReservations reads every reservation.
func (s *Store) AllReservations(ctx context.Context) ([]domain.Reservation, error) {
	return readAll(ctx, s, ColReservations, func(d *firestore.DocumentSnapshot) (domain.Reservation, error) {
		var r reservationDoc
		err := d.DataTo(&r)
		return r.domain(d.Ref.ID), err
	})
}
