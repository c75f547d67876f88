package store

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// keyLocks serialises, within one process, transactions that would contend
// on the same documents. Firestore resolves contention between processes by
// aborting and retrying transactions; on the emulator each such conflict
// costs a lock wait of about 2 s plus the client's backoff (from 1 s), so
// letting same-process transactions queue for a few milliseconds instead is
// far cheaper. Keys are taken in sorted order, so lockers cannot deadlock.
// A caller waits only as long as its context lives: one whose request ended
// gives up its place instead of queueing behind a transaction that may
// retry for minutes.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

// keyLock is a one-slot semaphore, so a wait for it can end with a context.
type keyLock struct {
	slot chan struct{}
	refs int
}

// lock takes every key and returns the function that releases them, or
// domain.ErrUnavailable (holding none) when ctx ends first.
func (l *keyLocks) lock(ctx context.Context, keys ...string) (func(), error) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	held := make([]*keyLock, 0, len(keys))
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			<-held[i].slot
			l.unref(keys[i], held[i])
		}
	}
	for _, k := range keys {
		e := l.ref(k)
		select {
		case e.slot <- struct{}{}:
			held = append(held, e)
		case <-ctx.Done():
			l.unref(k, e)
			release()
			return nil, fmt.Errorf("%w: waiting for %s: %w", domain.ErrUnavailable, k, ctx.Err())
		}
	}
	return release, nil
}

func (l *keyLocks) ref(k string) *keyLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	e := l.m[k]
	if e == nil {
		e = &keyLock{slot: make(chan struct{}, 1)}
		l.m[k] = e
	}
	e.refs++
	return e
}

func (l *keyLocks) unref(k string, e *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, k)
	}
}
