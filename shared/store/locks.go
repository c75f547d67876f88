package store

import (
	"slices"
	"sync"
)

// keyLocks serialises, within one process, transactions that would contend
// on the same documents. Firestore resolves contention between processes by
// aborting and retrying transactions; on the emulator each such conflict
// costs a lock wait of about 2 s plus the client's backoff (from 1 s), so
// letting same-process transactions queue for a few milliseconds instead is
// far cheaper. Keys are taken in sorted order, so lockers cannot deadlock.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// lock takes every key and returns the function that releases them.
func (l *keyLocks) lock(keys ...string) func() {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	held := make([]*keyLock, 0, len(keys))
	for _, k := range keys {
		l.mu.Lock()
		if l.m == nil {
			l.m = map[string]*keyLock{}
		}
		e := l.m[k]
		if e == nil {
			e = &keyLock{}
			l.m[k] = e
		}
		e.refs++
		l.mu.Unlock()
		e.mu.Lock()
		held = append(held, e)
	}
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].mu.Unlock()
			l.mu.Lock()
			held[i].refs--
			if held[i].refs == 0 {
				delete(l.m, keys[i])
			}
			l.mu.Unlock()
		}
	}
}
