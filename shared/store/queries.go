package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// IndexField is one field of a composite index.
type IndexField struct {
	Path  string
	Order string // ASCENDING or DESCENDING
}

// QueryShape is the shape of a query the code runs: an equality on the
// first field, a range and order on the second. Every shape needs a
// composite index; terraform declares one per shape, and a test compares
// them, since the emulator ignores indexes.
type QueryShape struct {
	Collection string
	Fields     []IndexField
}

// The queries the code runs.
var (
	// OverdueOrders: UNPAID orders whose deadline passed.
	OverdueOrders = QueryShape{ColOrders, []IndexField{{"status", "ASCENDING"}, {"deadline", "ASCENDING"}}}
	// StaleReservations: reservations with no order written after the saga budget.
	StaleReservations = QueryShape{ColReservations, []IndexField{{"state", "ASCENDING"}, {"createdAt", "ASCENDING"}}}
)

// Queries lists every shape (the terraform test reads it).
var Queries = []QueryShape{OverdueOrders, StaleReservations}

func (s *Store) query(q QueryShape, eq any, before time.Time, limit int) firestore.Query {
	return s.c.Collection(q.Collection).
		Where(q.Fields[0].Path, "==", eq).
		Where(q.Fields[1].Path, "<", before).
		OrderBy(q.Fields[1].Path, firestore.Asc).
		Limit(limit)
}

// Overdue is an UNPAID order past its deadline.
type Overdue struct {
	OrderID  string
	Deadline time.Time
}

// OverdueOrders returns up to limit UNPAID orders whose deadline is before
// `before`, oldest first.
func (s *Store) OverdueOrders(ctx context.Context, before time.Time, limit int) ([]Overdue, error) {
	docs, err := s.query(OverdueOrders, string(domain.OrderUnpaid), before, limit).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]Overdue, 0, len(docs))
	for _, d := range docs {
		o, err := decodeOrder(d)
		if err != nil {
			return nil, err
		}
		out = append(out, Overdue{OrderID: o.ID, Deadline: o.Deadline})
	}
	return out, nil
}

// StaleReservations returns up to limit reservations still RESERVED (no
// order written) that were created before `before`, oldest first.
func (s *Store) StaleReservations(ctx context.Context, before time.Time, limit int) ([]domain.Reservation, error) {
	docs, err := s.query(StaleReservations, string(domain.Reserved), before, limit).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	out := make([]domain.Reservation, 0, len(docs))
	for _, d := range docs {
		var rd reservationDoc
		if err := d.DataTo(&rd); err != nil {
			return nil, fmt.Errorf("decode reservation %q: %w", d.Ref.ID, err)
		}
		out = append(out, rd.domain(d.Ref.ID))
	}
	return out, nil
}
