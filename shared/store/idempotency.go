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

// Lease states.
const (
	LeasePending = "PENDING" // a create is running under this key
	LeaseDone    = "DONE"    // the order exists
	LeaseFailed  = "FAILED"  // the create failed and was compensated
)

type leaseDoc struct {
	UserID      string    `firestore:"userId"`
	OrderID     string    `firestore:"orderId"`
	State       string    `firestore:"state"`
	RequestHash string    `firestore:"requestHash"`
	Until       time.Time `firestore:"until"`
}

// Lease is the outcome of claiming an idempotency key.
type Lease struct {
	OrderID string
	// Owned: the caller runs the create under OrderID. Otherwise State says
	// what another create did or is doing.
	Owned bool
	State string
}

func leaseID(userID, key string) string {
	h := sha256.Sum256([]byte(userID + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// ClaimKey claims (userID, key) for one create. The first caller, or one
// arriving after a failed or expired (crashed) create, owns the key with
// newOrderID until `until`. A create already done answers its order id;
// one still running answers State PENDING. A key reused with another request
// body is domain.ErrIdempotencyMismatch.
func (s *Store) ClaimKey(ctx context.Context, userID, key, requestHash, newOrderID string, until time.Time) (Lease, error) {
	ref := s.c.Collection(ColIdempotency).Doc(leaseID(userID, key))
	var l Lease
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
			if d.State == LeaseDone || (d.State == LeasePending && s.now().Before(d.Until)) {
				l = Lease{OrderID: d.OrderID, State: d.State}
				return errNoChange
			}
		}
		l = Lease{OrderID: newOrderID, Owned: true, State: LeasePending}
		return t.Set(ref, leaseDoc{UserID: userID, OrderID: newOrderID, State: LeasePending, RequestHash: requestHash, Until: until.UTC()})
	})
	if err != nil {
		return Lease{}, fmt.Errorf("claim idempotency key: %w", err)
	}
	return l, nil
}

// SettleKey records how the create owning (userID, key) with orderID ended.
func (s *Store) SettleKey(ctx context.Context, userID, key, orderID, state string) error {
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
		return t.Update(ref, []firestore.Update{{Path: "state", Value: state}})
	})
	return classify(err)
}
