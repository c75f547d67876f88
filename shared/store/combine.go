package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// A flash sale sends many orders for one sharded item to every instance
// at once. Each instance commits them in batches: a committer per item
// (K/16 of them for K ≥ 32) takes the orders waiting, reads the shards
// once, plans every order in turn (all or nothing each, in arrival order),
// and commits the shard values and all the batch's reservations in one write-only
// transaction, conditioned on the shards' update times as a single order
// is. Fewer, larger commits mean fewer races between instances for a
// shard and less work per order. An order's outcome is exactly what it
// would have been alone: refused when the stock is gone, its earlier
// reservation returned when it has one.

const (
	// maxBatch bounds the reservations of one commit (Firestore allows 500
	// writes in one; each reservation is one, each shard touched one more).
	maxBatch = 64
	// batchTimeout bounds one batch's commit rounds, whoever waits for it.
	batchTimeout = 30 * time.Second
)

// committersFor is how many batches of an item with k shards one process
// commits at a time, each starting from a shard of its own. Fewer
// committers make larger batches and leave the other shards to other
// instances; BenchmarkHotItem chose k/16 (docs/benchmarks.md has the
// figures of the counts tried).
func committersFor(k int) int { return max(1, k/16) }

// combiner batches one sharded item's reservations within a process.
type combiner struct {
	s      *Store
	itemID string

	mu     sync.Mutex
	queue  []*pending
	active int
	starts []int // free starting shards, one per committer
}

// pending is one order waiting in a combiner.
type pending struct {
	orderID string
	want    domain.Want
	taken   bool // in a batch (guarded by the combiner's mu)
	done    chan struct{}
	lines   []domain.OrderLine
	err     error
}

func (p *pending) resolve(lines []domain.OrderLine, err error) {
	p.lines, p.err = lines, err
	close(p.done)
}

// combinerOf is the item's combiner.
func (s *Store) combinerOf(itemID string) *combiner {
	c, _ := s.combiners.LoadOrStore(itemID, &combiner{s: s, itemID: itemID})
	return c.(*combiner)
}

// reserve queues one order and waits for its batch. A caller whose ctx
// ends leaves the queue; one already in a batch gets ErrUnavailable while
// the batch goes on (as when any request is cut off mid-commit: the saga's
// compensation or the sweeper settles its reservation).
func (c *combiner) reserve(ctx context.Context, orderID string, w domain.Want) ([]domain.OrderLine, error) {
	p := &pending{orderID: orderID, want: w, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	k := max(c.s.seenShards(c.itemID), 1)
	if c.active < committersFor(k) {
		c.active++
		if len(c.starts) == 0 {
			c.starts = rand.Perm(k)
		}
		start := c.starts[0]
		c.starts = c.starts[1:]
		go c.commit(start)
	}
	c.mu.Unlock()
	select {
	case <-p.done:
		return p.lines, p.err
	case <-ctx.Done():
		c.mu.Lock()
		if !p.taken {
			c.queue = slices.DeleteFunc(c.queue, func(q *pending) bool { return q == p })
		}
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: waiting for a batch of %s: %w", domain.ErrUnavailable, c.itemID, ctx.Err())
	}
}

// commit takes batches until the queue is empty, each planned from shard
// start first.
func (c *combiner) commit(start int) {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.active--
			c.starts = append(c.starts, start)
			c.mu.Unlock()
			return
		}
		n := min(len(c.queue), maxBatch)
		batch := slices.Clone(c.queue[:n])
		c.queue = slices.Delete(c.queue, 0, n)
		for _, p := range batch {
			p.taken = true
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		start = c.commitBatch(ctx, batch, start)
		cancel()
	}
}

// commitBatch settles every order of batch and returns the shard to start
// the next batch from: start while it has stock, else another (at random,
// so committers of other instances do not all move to the same one).
func (c *combiner) commitBatch(ctx context.Context, batch []*pending, start int) int {
	s := c.s
	for round := 0; ; round++ {
		refs := make([]*firestore.DocumentRef, len(batch))
		for i, p := range batch {
			refs[i] = s.reservationRef(p.orderID)
		}
		views, existing, err := s.readStock(ctx, []string{c.itemID}, refs...)
		if err != nil {
			for _, p := range batch {
				p.resolve(nil, err)
			}
			return start
		}
		v, ok := views[c.itemID]
		if !ok || v.item.Shards == 1 {
			// Gone, or re-seeded onto one document: each order alone.
			for _, p := range batch {
				p.resolve(s.reserve(ctx, p.orderID, []string{c.itemID}, []domain.Want{p.want}))
			}
			return start
		}
		if start >= len(v.avail) || v.avail[start] <= 0 {
			var left []int
			for k, n := range v.avail {
				if n > 0 {
					left = append(left, k)
				}
			}
			if len(left) > 0 {
				start = left[rand.IntN(len(left))]
			}
		}
		items := map[string]*domain.Item{c.itemID: &v.item}
		avail := map[string][]int64{c.itemID: slices.Clone(v.avail)}
		order := func(string) func(int) []int {
			return func(n int) []int {
				perm := rand.Perm(n)
				if i := slices.Index(perm, start); i >= 0 {
					perm[0], perm[i] = perm[i], perm[0]
				}
				return perm
			}
		}
		type planned struct {
			p     *pending
			lines []domain.OrderLine
		}
		var in []planned
		res := map[*firestore.DocumentRef]reservationDoc{}
		for i, p := range batch {
			if existing[i].Exists() {
				p.resolve(existingReservation(existing[i]))
				continue
			}
			lines, takes, err := domain.Reserve(items, avail, []domain.Want{p.want}, order)
			if err != nil {
				p.resolve(nil, err)
				continue
			}
			in = append(in, planned{p, lines})
			res[refs[i]] = toReservationDoc(domain.Reservation{OrderID: p.orderID, Lines: lines, Takes: takes, State: domain.Reserved, CreatedAt: s.now()})
		}
		if len(in) == 0 {
			return start
		}
		err = s.commitTakes(ctx, views, avail, res)
		if err == nil {
			for _, x := range in {
				x.p.resolve(x.lines, nil)
			}
			return start
		}
		again, err := s.lostRace(ctx, err, round)
		if !again {
			for _, x := range in {
				x.p.resolve(nil, err)
			}
			return start
		}
		s.stats.conflicts.Add(int64(len(in)))
		batch = batch[:0]
		for _, x := range in {
			batch = append(batch, x.p)
		}
	}
}
