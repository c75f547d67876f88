// Package domain holds the order-timeout business rules: orders, pay orders,
// stock reservations, carts and wallets. It imports no cloud SDK; adapters in
// sibling packages store and transport these types.
package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors. Adapters wrap them with %w; shared/httpx maps them to HTTP
// status codes in one place.
var (
	ErrInvalid             = errors.New("invalid request")
	ErrNotFound            = errors.New("not found")
	ErrUnknownItem         = errors.New("unknown item")
	ErrInsufficientStock   = errors.New("insufficient stock")
	ErrInsufficientBalance = errors.New("insufficient balance")
	ErrOrderClosed         = errors.New("order is closed")
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	ErrUnavailable         = errors.New("dependency unavailable")
	ErrUnauthenticated     = errors.New("unauthenticated")
	ErrForbidden           = errors.New("forbidden")
	ErrOrderPaid           = errors.New("order is paid")
	ErrCartFull            = errors.New("cart is full")
	ErrCreateInProgress    = errors.New("a create with this idempotency key is still running")
	// ErrUnprocessable: a well-formed request or event that refers to
	// something that cannot exist (a payment event for an unknown order).
	ErrUnprocessable = errors.New("unprocessable")
	// ErrAmountOverflow: a line or order total, or a balance, that does not
	// fit in int64 cents. It is always carried by an *InvalidError.
	ErrAmountOverflow = errors.New("amount does not fit in int64 cents")
)

// InvalidError reports a bad input with a message that is safe to show the
// caller. Cause, when set, says which kind (ErrAmountOverflow).
type InvalidError struct {
	Msg   string
	Cause error
}

func (e *InvalidError) Error() string { return e.Msg }

// Unwrap lets errors.Is(err, ErrInvalid) match, and errors.Is of its Cause.
func (e *InvalidError) Unwrap() []error {
	if e.Cause != nil {
		return []error{ErrInvalid, e.Cause}
	}
	return []error{ErrInvalid}
}

// Invalidf builds an *InvalidError.
func Invalidf(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}
