package store

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// An item's stock lives in one document per shard: with K = 1 the item's
// own `stock` field, with K > 1 the documents items/{id}/shards/0..K-1
// (the item's own field is then 0). A reservation takes its units by
// compare-and-set: it reads the shards outside any transaction, plans
// which give what, and commits the new values together with the
// reservation in one write-only transaction whose every shard write is
// conditioned on the shard's update time. Nothing is locked while it
// plans, so concurrent orders on one item never wait on each other's
// locks (the cost of a read-then-write transaction on a hot document); a
// commit that lost a race fails its precondition and is planned again
// from a fresh read. Restores add units back with an increment, which
// needs no read of the shard.

func (s *Store) itemRef(id string) *firestore.DocumentRef { return s.c.Collection(ColItems).Doc(id) }

func (s *Store) reservationRef(orderID string) *firestore.DocumentRef {
	return s.c.Collection(ColReservations).Doc(orderID)
}

// seenShards is the item's shard count as this process last read it, 0
// before any read.
func (s *Store) seenShards(itemID string) int {
	if k, ok := s.shardsSeen.Load(itemID); ok {
		return k.(int)
	}
	return 0
}

// cellRef is the document holding shard k of an item with k shards.
func (s *Store) cellRef(itemID string, k, shards int) *firestore.DocumentRef {
	if shards <= 1 {
		return s.itemRef(itemID)
	}
	return s.itemRef(itemID).Collection(ColShards).Doc(strconv.Itoa(k))
}

func decodeItem(snap *firestore.DocumentSnapshot) (domain.Item, error) {
	var d itemDoc
	if err := snap.DataTo(&d); err != nil {
		return domain.Item{}, fmt.Errorf("decode item %q: %w", snap.Ref.ID, err)
	}
	return domain.Item{ID: snap.Ref.ID, Name: d.Name, PriceCents: d.PriceCents, Stock: d.Stock, Shards: max(d.Shards, 1), MaxPerShopper: d.MaxPerShopper}, nil
}

// decodeItems decodes the items of snaps that exist.
func decodeItems(snaps []*firestore.DocumentSnapshot) ([]domain.Item, error) {
	var out []domain.Item
	for _, snap := range snaps {
		if !snap.Exists() {
			continue
		}
		it, err := decodeItem(snap)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// stockView is an item with each shard's stock and update time, as read
// outside a transaction: what a compare-and-set plans from.
type stockView struct {
	item    domain.Item
	refs    []*firestore.DocumentRef
	avail   []int64
	updated []time.Time
}

// readStock reads items ids (absent ones are left out) and their shards.
// The shards of an item last seen sharded are read in the same round trip
// as the items; only an item whose shard count was unknown or changed
// costs a second one. extra documents are read in the first round trip;
// their snapshots are returned in order.
func (s *Store) readStock(ctx context.Context, ids []string, extra ...*firestore.DocumentRef) (map[string]*stockView, []*firestore.DocumentSnapshot, error) {
	refs := slices.Clone(extra)
	for _, id := range ids {
		refs = append(refs, s.itemRef(id))
	}
	guessed := map[string]int{}
	for _, id := range ids {
		if k := s.seenShards(id); k > 1 {
			guessed[id] = k
			for i := range k {
				refs = append(refs, s.cellRef(id, i, k))
			}
		}
	}
	snaps, err := s.c.GetAll(ctx, refs)
	if err != nil {
		return nil, nil, classify(err)
	}
	byPath := make(map[string]*firestore.DocumentSnapshot, len(snaps))
	for _, snap := range snaps[len(extra)+len(ids):] {
		byPath[snap.Ref.Path] = snap
	}
	views := make(map[string]*stockView, len(ids))
	var missing []*firestore.DocumentRef
	for _, snap := range snaps[len(extra) : len(extra)+len(ids)] {
		if !snap.Exists() {
			continue
		}
		it, err := decodeItem(snap)
		if err != nil {
			return nil, nil, err
		}
		v := &stockView{item: it}
		views[it.ID] = v
		s.shardsSeen.Store(it.ID, it.Shards)
		if it.Shards == 1 {
			v.refs, v.avail, v.updated = []*firestore.DocumentRef{snap.Ref}, []int64{it.Stock}, []time.Time{snap.UpdateTime}
			continue
		}
		for k := range it.Shards {
			v.refs = append(v.refs, s.cellRef(it.ID, k, it.Shards))
		}
		if guessed[it.ID] != it.Shards {
			missing = append(missing, v.refs...)
		}
	}
	if len(missing) > 0 {
		more, err := s.c.GetAll(ctx, missing)
		if err != nil {
			return nil, nil, classify(err)
		}
		for _, snap := range more {
			byPath[snap.Ref.Path] = snap
		}
	}
	for _, v := range views {
		if v.item.Shards == 1 {
			continue
		}
		v.item.Stock = 0
		v.avail, v.updated = make([]int64, len(v.refs)), make([]time.Time, len(v.refs))
		for k, ref := range v.refs {
			snap := byPath[ref.Path]
			if snap == nil || !snap.Exists() {
				continue // a re-seed is changing the layout: nothing to take here
			}
			var d shardDoc
			if err := snap.DataTo(&d); err != nil {
				return nil, nil, fmt.Errorf("decode shard %s: %w", ref.Path, err)
			}
			v.avail[k], v.updated[k] = d.Stock, snap.UpdateTime
			v.item.Stock += d.Stock
		}
	}
	return views, snaps[:len(extra)], nil
}

// readItem reads one item and its shards.
func (s *Store) readItem(ctx context.Context, id string) (*stockView, error) {
	views, _, err := s.readStock(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	v, ok := views[id]
	if !ok {
		return nil, fmt.Errorf("item %q: %w", id, domain.ErrNotFound)
	}
	return v, nil
}

// Item reads one catalog item; its stock is the sum over its shards.
func (s *Store) Item(ctx context.Context, id string) (domain.Item, error) {
	v, err := s.readItem(ctx, id)
	if err != nil {
		return domain.Item{}, err
	}
	return v.item, nil
}

// ItemShards reads an item's stock shard by shard (tools and tests).
func (s *Store) ItemShards(ctx context.Context, id string) ([]int64, error) {
	v, err := s.readItem(ctx, id)
	if err != nil {
		return nil, err
	}
	return v.avail, nil
}

// PutItem creates or replaces a catalog item (seeding, restocking): its
// stock is spread over its it.Shards shards (0 means 1), and shards an
// earlier layout had beyond them are removed, all in one transaction.
func (s *Store) PutItem(ctx context.Context, it domain.Item) error {
	if err := domain.CheckShards("shards", it.Shards); err != nil {
		return err
	}
	if err := domain.CheckMaxPerShopper("maxPerShopper", it.MaxPerShopper); err != nil {
		return err
	}
	k := it.ShardCount()
	return s.tx(ctx, func(t *firestore.Transaction) error {
		old := 1
		snap, err := t.Get(s.itemRef(it.ID))
		if err != nil && !notFound(err) {
			return err
		}
		if snap.Exists() {
			o, err := decodeItem(snap)
			if err != nil {
				return err
			}
			old = o.Shards
		}
		d := itemDoc{Name: it.Name, PriceCents: it.PriceCents, Stock: it.Stock, MaxPerShopper: it.MaxPerShopper}
		if k > 1 {
			d.Stock, d.Shards = 0, k
			for i, n := range domain.Spread(it.Stock, k) {
				if err := t.Set(s.cellRef(it.ID, i, k), shardDoc{Stock: n}); err != nil {
					return err
				}
			}
		}
		// Shards the old layout had and the new one has not.
		for i := range old {
			if old > 1 && (k == 1 || i >= k) {
				if err := t.Delete(s.cellRef(it.ID, i, old)); err != nil {
					return err
				}
			}
		}
		return t.Set(s.itemRef(it.ID), d)
	})
}

// Reserve deducts wants from stock for orderID, all or nothing, and records a
// reservation with the catalog prices and the shards it took from. It is
// idempotent per orderID: a second call returns the first reservation's
// lines without taking more. If the order's reservation was already
// restored (a compensation overtook this deduct), it fails with
// domain.ErrOrderClosed and takes nothing. An item without the stock is
// refused (domain.ErrInsufficientStock) from a plain read, without a
// transaction.
func (s *Store) Reserve(ctx context.Context, orderID string, wants []domain.Want) ([]domain.OrderLine, error) {
	ids := domain.ItemIDs(wants)
	// Within one process, orders for a one-document item queue for it
	// rather than lose compare-and-sets to each other; orders for one
	// sharded item are committed in batches (see combiner).
	keys := []string{"reservation/" + orderID}
	sharded := false
	for _, id := range ids {
		if s.seenShards(id) > 1 {
			sharded = true
		} else {
			keys = append(keys, "item/"+id)
		}
	}
	unlock, err := s.locks.lock(ctx, keys...)
	if err != nil {
		return nil, fmt.Errorf("reserve stock for order %q: %w", orderID, err)
	}
	defer unlock()
	var lines []domain.OrderLine
	if sharded && len(wants) == 1 {
		lines, err = s.combinerOf(ids[0]).reserve(ctx, orderID, wants[0])
	} else {
		lines, err = s.reserve(ctx, orderID, ids, wants)
	}
	if err != nil {
		return nil, fmt.Errorf("reserve stock for order %q: %w", orderID, err)
	}
	return lines, nil
}

// maxReserveRounds bounds the compare-and-set rounds of one reservation;
// in practice the caller's context ends first.
const maxReserveRounds = 64

// existingReservation is what a reservation already stored means for a
// deduct: its lines (a repeated call), or domain.ErrOrderClosed.
func existingReservation(snap *firestore.DocumentSnapshot) ([]domain.OrderLine, error) {
	var d reservationDoc
	if err := snap.DataTo(&d); err != nil {
		return nil, fmt.Errorf("decode reservation %q: %w", snap.Ref.ID, err)
	}
	if d.State == string(domain.Restored) {
		return nil, fmt.Errorf("reservation for order %q was already given back: %w", snap.Ref.ID, domain.ErrOrderClosed)
	}
	return fromLineDocs(d.Lines), nil
}

// lostRace reports whether a commit failed because another write reached
// one of its documents first (or a re-seed changed a layout, or a
// duplicate call created the reservation): read again and plan anew.
func (s *Store) lostRace(ctx context.Context, err error, round int) (bool, error) {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists:
	default:
		return false, err
	}
	if round+1 >= maxReserveRounds {
		return false, fmt.Errorf("%w: stock still contended after %d rounds", domain.ErrUnavailable, maxReserveRounds)
	}
	wait := time.Duration(rand.Int64N(int64(min(time.Millisecond<<min(round, 7), 100*time.Millisecond)) + 1))
	select {
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %w", domain.ErrUnavailable, ctx.Err())
	case <-time.After(wait):
		return true, nil
	}
}

// reserve is one order's compare-and-set loop.
func (s *Store) reserve(ctx context.Context, orderID string, ids []string, wants []domain.Want) ([]domain.OrderLine, error) {
	resRef := s.reservationRef(orderID)
	for round := 0; ; round++ {
		views, extra, err := s.readStock(ctx, ids, resRef)
		if err != nil {
			return nil, err
		}
		if extra[0].Exists() {
			return existingReservation(extra[0])
		}
		items := make(map[string]*domain.Item, len(views))
		avail := make(map[string][]int64, len(views))
		for id, v := range views {
			items[id], avail[id] = &v.item, slices.Clone(v.avail)
		}
		for _, id := range ids {
			if _, ok := items[id]; !ok {
				return nil, fmt.Errorf("item %q: %w", id, domain.ErrUnknownItem)
			}
		}
		lines, takes, err := domain.Reserve(items, avail, wants, func(string) func(int) []int { return rand.Perm })
		if err != nil {
			return nil, err
		}
		res := toReservationDoc(domain.Reservation{OrderID: orderID, Lines: lines, Takes: takes, State: domain.Reserved, CreatedAt: s.now()})
		err = s.commitTakes(ctx, views, avail, map[*firestore.DocumentRef]reservationDoc{resRef: res})
		if err == nil {
			return lines, nil
		}
		if again, err := s.lostRace(ctx, err, round); !again {
			return nil, err
		}
		s.stats.conflicts.Add(1)
	}
}

// commitTakes writes the new value of every shard whose avail differs from
// what views read, each conditioned on the update time it was read at,
// and creates the reservations, atomically.
func (s *Store) commitTakes(ctx context.Context, views map[string]*stockView, avail map[string][]int64, res map[*firestore.DocumentRef]reservationDoc) error {
	return s.tx(ctx, func(t *firestore.Transaction) error {
		for id, v := range views {
			for k, n := range avail[id] {
				if n == v.avail[k] {
					continue
				}
				if err := t.Update(v.refs[k], []firestore.Update{{Path: "stock", Value: n}}, firestore.LastUpdateTime(v.updated[k])); err != nil {
					return err
				}
			}
		}
		for ref, d := range res {
			if err := t.Create(ref, d); err != nil {
				return err
			}
		}
		return nil
	})
}

// Restore gives back exactly what orderID's reservation took, shard by
// shard, at most once. A restore for an order with no reservation leaves a
// RESTORED tombstone, so a deduct that arrives later (a retried saga step)
// takes nothing. Units go back to the shard they came from, or, when a
// re-seed changed the item's shard count meanwhile, to domain.ShardFor.
//
// With onlyIfNoOrder (saga compensation, orphan release) it gives nothing
// back while an order with this id exists and is not cancelled, checked in
// the same transaction: a create whose commit was reported as failed but
// went through keeps its stock.
func (s *Store) Restore(ctx context.Context, orderID string, onlyIfNoOrder bool) (domain.Change, error) {
	// Learn the items first (a reservation's lines never change), so the
	// in-process locks cover the one-document ones.
	keys := []string{"reservation/" + orderID}
	if r, err := s.Reservation(ctx, orderID); err == nil {
		for _, l := range r.Lines {
			if s.seenShards(l.ItemID) <= 1 {
				keys = append(keys, "item/"+l.ItemID)
			}
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
		resRef := s.reservationRef(orderID)
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
		var takes []domain.Take
		if takes, change = r.Restore(s.now()); change != domain.Applied {
			return errNoChange
		}
		// The items' layouts, read in the transaction so a re-seed cannot
		// change them under it. The shards themselves are not read: an
		// increment needs no read, and so takes no lock on them.
		shards, err := s.layouts(t, takes)
		if err != nil {
			return err
		}
		back := map[string]int64{}
		refs := map[string]*firestore.DocumentRef{}
		for _, tk := range takes {
			k, ok := shards[tk.ItemID]
			if !ok {
				continue // the item left the catalog
			}
			ref := s.cellRef(tk.ItemID, domain.ShardFor(tk.Shard, k), k)
			back[ref.Path] += tk.Quantity
			refs[ref.Path] = ref
		}
		for _, p := range slices.Sorted(maps.Keys(back)) {
			if err := t.Update(refs[p], []firestore.Update{{Path: "stock", Value: firestore.Increment(back[p])}}); err != nil {
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

// layouts reads, in t, the shard count of each item takes name (absent
// items are left out).
func (s *Store) layouts(t *firestore.Transaction, takes []domain.Take) (map[string]int, error) {
	var ids []string
	for _, tk := range takes {
		ids = append(ids, tk.ItemID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	refs := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		refs[i] = s.itemRef(id)
	}
	snaps, err := t.GetAll(refs)
	if err != nil {
		return nil, err
	}
	items, err := decodeItems(snaps)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(items))
	for _, it := range items {
		out[it.ID] = it.Shards
	}
	return out, nil
}

// Reservation reads orderID's reservation.
func (s *Store) Reservation(ctx context.Context, orderID string) (domain.Reservation, error) {
	snap, err := s.reservationRef(orderID).Get(ctx)
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
