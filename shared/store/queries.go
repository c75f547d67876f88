package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// IndexField is one field of a composite index.
type IndexField struct {
	Path  string
	Order string // ASCENDING or DESCENDING
}

// QueryShape is the shape of a query the code runs: equalities on every
// field but the last, a range and order on the last. Every shape needs a
// composite index; terraform declares one per shape, and a test compares
// them, since the emulator ignores indexes.
type QueryShape struct {
	Collection string
	Fields     []IndexField
}

// The queries the code runs.
var (
	// OverdueOrders: UNPAID orders whose deadline passed, one sweep shard
	// at a time (see SweepShards).
	OverdueOrders = QueryShape{ColOrders, []IndexField{{"status", "ASCENDING"}, {fieldSweepShard, "ASCENDING"}, {"deadline", "ASCENDING"}}}
	// StaleReservations: reservations with no order written after the saga
	// budget, one sweep shard at a time.
	StaleReservations = QueryShape{ColReservations, []IndexField{{"state", "ASCENDING"}, {fieldSweepShard, "ASCENDING"}, {"createdAt", "ASCENDING"}}}
	// UserOrders: a shopper's orders, newest first. Its index entries are
	// spread by userId, so createdAt is no sequential hotspot here.
	UserOrders = QueryShape{ColOrders, []IndexField{{"userId", "ASCENDING"}, {"createdAt", "DESCENDING"}}}
	// UserOrdersByStatus: a shopper's orders in one status, newest first.
	UserOrdersByStatus = QueryShape{ColOrders, []IndexField{{"userId", "ASCENDING"}, {"status", "ASCENDING"}, {"createdAt", "DESCENDING"}}}
)

// Queries lists every shape (the terraform test reads it).
var Queries = []QueryShape{OverdueOrders, StaleReservations, UserOrders, UserOrdersByStatus}

// SweepShards is how many values the sweepShard field takes. Firestore
// sustains about 500 writes/s to an index whose entries arrive in
// increasing order (a timestamp); an index on (status, deadline) would be
// one such range for every UNPAID order. Putting sweepShard, fixed per
// document, before the timestamp splits it into SweepShards ranges, so the
// sweeper's indexes take SweepShards × 500 writes/s, and the sweeper asks
// each shard in turn.
const SweepShards = 8

const fieldSweepShard = "sweepShard"

// sweepShard is a document's shard: a hash of its (random) id, so it is
// spread evenly, and the same on every rewrite without being read first.
func sweepShard(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % SweepShards)
}

// sweep runs shape (equalities eq..., then before on its timestamp) on
// every sweep shard and returns the oldest limit documents of them all:
// each shard is asked for limit, so nothing older is missed, and a page
// still holds at most limit.
func (s *Store) sweep(ctx context.Context, q QueryShape, eq any, before time.Time, limit int) ([]*firestore.DocumentSnapshot, error) {
	ts := q.Fields[len(q.Fields)-1].Path
	var all []*firestore.DocumentSnapshot
	for shard := range SweepShards {
		docs, err := s.c.Collection(q.Collection).
			Where(q.Fields[0].Path, "==", eq).
			Where(q.Fields[1].Path, "==", shard).
			Where(ts, "<", before).
			OrderBy(ts, firestore.Asc).
			Limit(limit).Documents(ctx).GetAll()
		if err != nil {
			return nil, classify(err)
		}
		all = append(all, docs...)
	}
	at := func(d *firestore.DocumentSnapshot) time.Time {
		v, _ := d.DataAt(ts)
		t, _ := v.(time.Time)
		return t
	}
	slices.SortStableFunc(all, func(a, b *firestore.DocumentSnapshot) int { return at(a).Compare(at(b)) })
	return all[:min(len(all), limit)], nil
}

// OverdueOrders returns up to limit UNPAID orders whose deadline is before
// `before`, oldest first.
func (s *Store) OverdueOrders(ctx context.Context, before time.Time, limit int) ([]domain.Order, error) {
	docs, err := s.sweep(ctx, OverdueOrders, string(domain.OrderUnpaid), before, limit)
	if err != nil {
		return nil, err
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
	docs, err := s.sweep(ctx, StaleReservations, string(domain.Reserved), before, limit)
	if err != nil {
		return nil, err
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

// storedDocs names, per collection (group), the document type the code
// writes there.
var storedDocs = map[string]any{
	ColItems: itemDoc{}, ColShards: shardDoc{}, ColReservations: reservationDoc{}, ColOrders: orderDoc{},
	ColPayOrders: payOrderDoc{}, ColWallets: walletDoc{}, ColCarts: cartDoc{}, ColIdempotency: leaseDoc{},
	ColShoppers: allowanceDoc{}, ColOutbox: outboxDoc{},
}

// TTLFields names the fields ("collection.field") whose time Firestore's
// TTL policy deletes a document after: decided orders, idempotency leases
// and undelivered events (terraform declares the policies; a test holds
// the two lists together).
func TTLFields() []string {
	return []string{ColIdempotency + ".expireAt", ColOrders + ".expireAt", ColOutbox + ".expireAt"}
}

// StoredFields lists, per collection (group), the top-level fields the
// code writes. No query filters or orders on one field alone (every query
// has its composite index, see Queries), so none needs Firestore's default
// single-field indexes; terraform exempts every one of them (a test holds
// the two lists together), which removes the index writes on increasing
// timestamps (createdAt, deadline, paidAt, ...) that would cap each
// collection near 500 writes/s.
func StoredFields() map[string][]string {
	out := make(map[string][]string, len(storedDocs))
	for col, doc := range storedDocs {
		t := reflect.TypeOf(doc)
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("firestore"), ",")
			out[col] = append(out[col], name)
		}
		slices.Sort(out[col])
	}
	return out
}
