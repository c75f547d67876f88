package store

import (
	"context"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Whole-collection reads for tools (invariant checks, demo, load reports).
// They read everything: not for request paths.

// AllItems reads every item.
func (s *Store) AllItems(ctx context.Context) ([]domain.Item, error) {
	docs, err := s.c.Collection(ColItems).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]domain.Item, 0, len(docs))
	for _, d := range docs {
		var it itemDoc
		if err := d.DataTo(&it); err != nil {
			return nil, err
		}
		out = append(out, domain.Item{ID: d.Ref.ID, Name: it.Name, PriceCents: it.PriceCents, Stock: it.Stock})
	}
	return out, nil
}

// AllOrders reads every order.
func (s *Store) AllOrders(ctx context.Context) ([]domain.Order, error) {
	docs, err := s.c.Collection(ColOrders).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]domain.Order, 0, len(docs))
	for _, d := range docs {
		o, err := decodeOrder(d)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// AllPayOrders reads every pay order.
func (s *Store) AllPayOrders(ctx context.Context) ([]domain.PayOrder, error) {
	docs, err := s.c.Collection(ColPayOrders).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]domain.PayOrder, 0, len(docs))
	for _, d := range docs {
		p, err := decodePayOrder(d)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// AllWallets reads every wallet.
func (s *Store) AllWallets(ctx context.Context) ([]domain.Wallet, error) {
	docs, err := s.c.Collection(ColWallets).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]domain.Wallet, 0, len(docs))
	for _, d := range docs {
		var w walletDoc
		if err := d.DataTo(&w); err != nil {
			return nil, err
		}
		out = append(out, domain.Wallet{UserID: d.Ref.ID, BalanceCents: w.BalanceCents})
	}
	return out, nil
}

// AllReservations reads every reservation.
func (s *Store) AllReservations(ctx context.Context) ([]domain.Reservation, error) {
	docs, err := s.c.Collection(ColReservations).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]domain.Reservation, 0, len(docs))
	for _, d := range docs {
		var r reservationDoc
		if err := d.DataTo(&r); err != nil {
			return nil, err
		}
		out = append(out, r.domain(d.Ref.ID))
	}
	return out, nil
}
