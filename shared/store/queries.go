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
	// UserOrders: a shopper's orders, newest first.
	UserOrders = QueryShape{ColOrders, []IndexField{{"userId", "ASCENDING"}, {"createdAt", "DESCENDING"}}}
	// UserOrdersByStatus: a shopper's orders in one status, newest first.
	UserOrdersByStatus = QueryShape{ColOrders, []IndexField{{"userId", "ASCENDING"}, {"status", "ASCENDING"}, {"createdAt", "DESCENDING"}}}
)

// Queries lists every shape (the terraform test reads it).
var Queries = []QueryShape{OverdueOrders, StaleReservations, UserOrders, UserOrdersByStatus}

func (s *Store) query(q QueryShape, eq any, before time.Time, limit int) firestore.Query {
	return s.c.Collection(q.Collection).
		Where(q.Fields[0].Path, "==", eq).
		Where(q.Fields[1].Path, "<", before).
		OrderBy(q.Fields[1].Path, firestore.Asc).
		Limit(limit)
}

// OverdueOrders returns up to limit UNPAID orders whose deadline is before
// `before`, oldest first.
func (s *Store) OverdueOrders(ctx context.Context, before time.Time, limit int) ([]domain.Order, error) {
	docs, err := s.query(OverdueOrders, string(domain.OrderUnpaid), before, limit).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	return decodeOrders(docs)
}

func decodeOrders(docs []*firestore.DocumentSnapshot) ([]domain.Order, error) {
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

// ListOrders returns up to limit of userID's orders (in status, when not
// empty), newest first, starting after the order `after` (nil: from the
// newest). Orders created in the same microsecond come in id order, so a
// cursor of (createdAt, id) pages through them all exactly once, however
// many orders are created meanwhile.
func (s *Store) ListOrders(ctx context.Context, userID string, status domain.OrderStatus, limit int, after *domain.Order) ([]domain.Order, error) {
	// The query is built from its shape, which terraform indexes.
	shape, eqs := UserOrders, []any{userID}
	if status != "" {
		shape, eqs = UserOrdersByStatus, []any{userID, string(status)}
	}
	q := s.c.Collection(shape.Collection).Query
	for i, v := range eqs {
		q = q.Where(shape.Fields[i].Path, "==", v)
	}
	q = q.OrderBy(shape.Fields[len(eqs)].Path, firestore.Desc).OrderBy(firestore.DocumentID, firestore.Desc)
	if after != nil {
		q = q.StartAfter(after.CreatedAt.UTC(), s.orderRef(after.ID))
	}
	docs, err := q.Limit(limit).Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(err)
	}
	return decodeOrders(docs)
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
