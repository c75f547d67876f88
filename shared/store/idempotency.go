package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// ColIdempotency holds one lease per (user, Idempotency-Key).
const ColIdempotency = "idempotency"

type leaseDoc struct {
	UserID      string    `firestore:"userId"`
	OrderID     string    `firestore:"orderId"`
	State       string    `firestore:"state"`
	RequestHash string    `firestore:"requestHash"`
	Until       time.Time `firestore:"until"`
	// ExpireAt: Firestore's TTL policy deletes the lease after this;
	// a retry with the key so late is a new create.
	ExpireAt time.Time `firestore:"expireAt"`
}

// KeyRetention is how long an Idempotency-Key is remembered after its
// create's budget.
const KeyRetention = 7 * 24 * time.Hour

func leaseID(userID, key string) string {
	h := sha256.Sum256([]byte(userID + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// ClaimKey claims (userID, key) for one create. The first caller, or one
// arriving after a failed or expired (crashed) create, owns the key with
// newOrderID until `until`. A create already done answers its order id;
// one still running answers State PENDING. A key reused with another request
// body is domain.ErrIdempotencyMismatch.
func (s *Store) ClaimKey(ctx context.Context, userID, key, requestHash, newOrderID string, until time.Time) (domain.Lease, error) {
	ref := s.c.Collection(ColIdempotency).Doc(leaseID(userID, key))
	var l domain.Lease
	err := s.tx(ctx, func(t *firestore.Transaction) error {
		snap, err := t.Get(ref)
		if err != nil && !notFound(err) {
			return err
		}
		if snap.Exists() {
			var d leaseDoc
			if err := snap.DataTo(&d); err != nil {
				return fmt.Errorf("decode idempotency lease: %w", err)
			}
			if d.RequestHash != requestHash {
				return domain.ErrIdempotencyMismatch
			}
			if state := domain.LeaseState(d.State); state == domain.LeaseDone || (state == domain.LeasePending && s.now().Before(d.Until)) {
				l = domain.Lease{OrderID: d.OrderID, State: state}
				return errNoChange
			}
		}
		l = domain.Lease{OrderID: newOrderID, Owned: true, State: domain.LeasePending}
		return t.Set(ref, leaseDoc{UserID: userID, OrderID: newOrderID, State: string(domain.LeasePending), RequestHash: requestHash, Until: until.UTC(), ExpireAt: until.UTC().Add(KeyRetention)})
	})
	if err != nil {
		return domain.Lease{}, fmt.Errorf("claim idempotency key: %w", err)
	}
	return l, nil
}

// SettleKey records how the create owning (userID, key) with orderID ended.
func (s *Store) SettleKey(ctx context.Context, userID, key, orderID string, state domain.LeaseState) error {
	ref := s.c.Collection(ColIdempotency).Doc(leaseID(userID, key))
	err := s.tx(ctx, func(t *firestore.Transaction) error {
		snap, err := t.Get(ref)
		if err != nil {
			return err
		}
		var d leaseDoc
		if err := snap.DataTo(&d); err != nil {
			return err
		}
		if d.OrderID != orderID {
			return errNoChange // another create took over
		}
		return t.Update(ref, []firestore.Update{{Path: "state", Value: string(state)}})
	})
	return classify(err)
}
