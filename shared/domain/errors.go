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
)

// InvalidError reports a bad input with a message that is safe to show the caller.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

// Invalidf builds an *InvalidError.
func Invalidf(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}
