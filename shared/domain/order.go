package domain

import "time"

// OrderStatus is the life cycle of an order: UNPAID → PAID | CANCELLED.
type OrderStatus string

const (
	OrderUnpaid    OrderStatus = "UNPAID"
	OrderPaid      OrderStatus = "PAID"
	OrderCancelled OrderStatus = "CANCELLED"
)

// Cancel reasons.
const (
	CancelPaymentTimeout = "PAYMENT_TIMEOUT" // the payment deadline passed
	CancelUserCancelled  = "USER_CANCELLED"  // the shopper gave the order up
)

// OrderLine is one item of an order, priced from the catalog at reservation time.
type OrderLine struct {
	ItemID     string
	Quantity   int64
	PriceCents int64
}

// Order is a shopper's order. Times are UTC; zero means unset.
type Order struct {
	ID           string
	UserID       string
	Status       OrderStatus
	Items        []OrderLine
	TotalCents   int64
	Deadline     time.Time
	CreatedAt    time.Time
	PaidAt       time.Time
	CancelledAt  time.Time
	CancelReason string
	// RemindedFor is the deadline an "approaching" reminder was sent for.
	RemindedFor time.Time
}

// NewOrder builds an UNPAID order from reserved lines. The total is computed
// here from catalog prices, never taken from a client; one that does not fit
// in int64 cents is an *InvalidError (ErrAmountOverflow).
func NewOrder(id, userID string, lines []OrderLine, now, deadline time.Time) (Order, error) {
	total, err := Total(lines)
	if err != nil {
		return Order{}, err
	}
	return Order{
		ID:         id,
		UserID:     userID,
		Status:     OrderUnpaid,
		Items:      append([]OrderLine(nil), lines...),
		TotalCents: total,
		Deadline:   deadline.UTC(),
		CreatedAt:  now.UTC(),
	}, nil
}

// MarkPaid moves UNPAID → PAID.
func (o *Order) MarkPaid(at time.Time) Change {
	switch o.Status {
	case OrderPaid:
		return NoOp
	case OrderCancelled:
		return Refused
	}
	o.Status = OrderPaid
	o.PaidAt = at.UTC()
	return Applied
}

// Cancel moves UNPAID → CANCELLED with a reason.
func (o *Order) Cancel(at time.Time, reason string) Change {
	switch o.Status {
	case OrderCancelled:
		return NoOp
	case OrderPaid:
		return Refused
	}
	o.Status = OrderCancelled
	o.CancelledAt = at.UTC()
	o.CancelReason = reason
	return Applied
}

// ExtendDeadline moves an UNPAID order's deadline later. An earlier or equal
// deadline, or a closed order, is a no-op.
func (o *Order) ExtendDeadline(to time.Time) Change {
	if o.Status != OrderUnpaid {
		return Refused
	}
	if !to.After(o.Deadline) {
		return NoOp
	}
	o.Deadline = to.UTC()
	return Applied
}

// Remind records that the reminder for deadline was sent: only for an
// UNPAID order whose deadline is still that one, and once per deadline.
func (o *Order) Remind(deadline time.Time) Change {
	if o.Status != OrderUnpaid {
		return Refused
	}
	deadline = deadline.UTC().Truncate(time.Microsecond) // as stored
	if !o.Deadline.Equal(deadline) || o.RemindedFor.Equal(deadline) {
		return NoOp
	}
	o.RemindedFor = deadline.UTC()
	return Applied
}
