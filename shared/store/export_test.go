package store

import "context"

// HoldKeys takes the store's in-process key locks, as a transaction in
// flight would, until the returned function is called.
func (s *Store) HoldKeys(keys ...string) func() {
	unlock, err := s.locks.lock(context.Background(), keys...)
	if err != nil {
		panic(err)
	}
	return unlock
}
