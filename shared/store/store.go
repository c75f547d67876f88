// Package store is the Firestore adapter: it keeps orders, pay orders, stock,
// reservations, carts and wallets, and runs every state change in one
// transaction with a bounded retry on contention.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Collection names. Terraform declares indexes against these.
const (
	ColItems        = "items"
	ColReservations = "reservations"
	ColOrders       = "orders"
	ColPayOrders    = "payOrders"
	ColWallets      = "wallets"
	ColCarts        = "carts"
	// ColShards is the subcollection of an item holding its stock shards.
	ColShards = "shards"
)

// DefaultTxAttempts bounds how often one transaction is tried (the client's
// default is 5). Retries go through the client's own loop, which sends the
// aborted transaction's id with the retry so the backend gives it priority
// (oldest wins), and backs off with full jitter from 1 s doubling to 30 s.
// Under a sustained burst on one item a transaction can lose several
// rounds, so 5 attempts would fail real orders; 12 attempts is a few
// minutes of worst-case backoff, longer than any request deadline, so the
// caller's context is the practical bound and the cap only stops a
// transaction that can never commit.
const DefaultTxAttempts = 12

// Store is the Firestore adapter. It is safe for concurrent use.
type Store struct {
	c        *firestore.Client
	attempts int
	now      func() time.Time
	locks    keyLocks
	// shardsSeen caches each item's shard count (item id → int) as last
	// read; it only chooses whether in-process locks queue an item's
	// orders, never what is taken.
	shardsSeen sync.Map
	// combiners is each sharded item's *combiner.
	combiners sync.Map
	// sink delivers order events after their commit (nil: events off).
	sink EventSink
	// retention: how long a decided order is kept (0: forever).
	retention time.Duration
	stats     struct{ txRuns, conflicts, txRetries, slowCommits atomic.Int64 }
	// meter counts the Firestore work of each operation (Usage).
	meter *meter
}

// Stats counts contention since the store was opened.
type Stats struct {
	// Transactions: read-write transactions run (each counted once).
	Transactions int64
	// StockConflicts: reservations planned again because another write
	// reached a shard first (a compare-and-set lost).
	StockConflicts int64
	// TxRetries: transaction attempts after the first (ABORTED by contention).
	TxRetries int64
	// SlowCommits: transactions that took over a second (on the emulator, a
	// lock wait on a contended document).
	SlowCommits int64
}

// Stats returns the contention counts so far.
func (s *Store) Stats() Stats {
	return Stats{Transactions: s.stats.txRuns.Load(), StockConflicts: s.stats.conflicts.Load(), TxRetries: s.stats.txRetries.Load(), SlowCommits: s.stats.slowCommits.Load()}
}

// New opens a client for projectID (database "(default)"). With
// FIRESTORE_EMULATOR_HOST set, the client talks to the emulator. The client
// outlives ctx (it is created once per instance and serves every request):
// ctx's values reach it, its cancellation does not.
func New(ctx context.Context, projectID string) (*Store, error) {
	m := newMeter()
	opts, err := m.clientOptions()
	if err != nil {
		return nil, fmt.Errorf("firestore client for project %q: %w", projectID, err)
	}
	c, err := firestore.NewClient(context.WithoutCancel(ctx), projectID, opts...)
	if err != nil {
		return nil, fmt.Errorf("firestore client for project %q: %w", projectID, err)
	}
	// Firestore keeps microseconds: times are truncated so an answer built in
	// memory equals the same document read back.
	return &Store{c: c, meter: m, attempts: DefaultTxAttempts, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}, nil
}

// Close releases the client.
func (s *Store) Close() error {
	err := s.c.Close()
	if s.meter.conn != nil {
		_ = s.meter.conn.Close() // may be closed by the client already
	}
	return err
}

// Client exposes the Firestore client for tools (seed, invariant checks).
func (s *Store) Client() *firestore.Client { return s.c }

// errNoChange ends a transaction without writing.
var errNoChange = errors.New("no change")

// tx runs f in a read-write transaction, retried on contention (ABORTED)
// at most s.attempts times. f returning errNoChange ends it without writing.
// Retries and slow commits are counted in Stats.
func (s *Store) tx(ctx context.Context, f func(*firestore.Transaction) error) error {
	s.stats.txRuns.Add(1)
	op := s.meter.op()
	s.meter.add(ctx, op, kTransactions, 1)
	start, attempts := time.Now(), 0
	err := s.c.RunTransaction(ctx, func(_ context.Context, t *firestore.Transaction) error {
		if attempts++; attempts > 1 {
			s.stats.txRetries.Add(1)
		}
		s.meter.add(ctx, op, kAttempts, 1)
		return f(t)
	}, firestore.MaxAttempts(s.attempts))
	if time.Since(start) > time.Second {
		s.stats.slowCommits.Add(1)
	}
	if errors.Is(err, errNoChange) {
		return nil
	}
	return classify(err)
}

// classify maps transport failures to domain.ErrUnavailable and leaves
// domain errors as they are.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Canceled, codes.Internal, codes.Unknown:
		if _, ok := status.FromError(err); ok {
			return fmt.Errorf("%w: firestore: %w", domain.ErrUnavailable, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
	}
	return err
}

func notFound(err error) bool { return status.Code(err) == codes.NotFound }
