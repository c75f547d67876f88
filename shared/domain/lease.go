package domain

// LeaseState is how the create under an Idempotency-Key stands.
type LeaseState string

const (
	LeasePending LeaseState = "PENDING" // a create is running under this key
	LeaseDone    LeaseState = "DONE"    // the order exists
	LeaseFailed  LeaseState = "FAILED"  // the create failed and was compensated
)

// Lease is the outcome of claiming an Idempotency-Key for one create.
type Lease struct {
	OrderID string
	// Owned: the caller runs the create under OrderID. Otherwise State says
	// what another create did or is doing.
	Owned bool
	State LeaseState
}
