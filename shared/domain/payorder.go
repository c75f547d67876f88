package domain

import "time"

// PayStatus is the life cycle of a pay order: WAITING → SUCCESS | CLOSED.
type PayStatus string

const (
	PayWaiting PayStatus = "WAITING"
	PaySuccess PayStatus = "SUCCESS"
	PayClosed  PayStatus = "CLOSED"
)

// PayOrder records the payment of one business order (BizOrderNo = order id).
type PayOrder struct {
	ID          string
	BizOrderNo  string
	UserID      string
	AmountCents int64
	Status      PayStatus
	CreatedAt   time.Time
	PaidAt      time.Time
	ClosedAt    time.Time
}

// NewPayOrder opens a WAITING pay order for an order.
func NewPayOrder(id string, o Order, now time.Time) PayOrder {
	return PayOrder{
		ID:          id,
		BizOrderNo:  o.ID,
		UserID:      o.UserID,
		AmountCents: o.TotalCents,
		Status:      PayWaiting,
		CreatedAt:   now.UTC(),
	}
}

// Succeed moves WAITING → SUCCESS.
func (p *PayOrder) Succeed(at time.Time) Change {
	switch p.Status {
	case PaySuccess:
		return NoOp
	case PayClosed:
		return Refused
	}
	p.Status = PaySuccess
	p.PaidAt = at.UTC()
	return Applied
}

// Close moves WAITING → CLOSED, so that no payment can land afterwards.
func (p *PayOrder) Close(at time.Time) Change {
	switch p.Status {
	case PayClosed:
		return NoOp
	case PaySuccess:
		return Refused
	}
	p.Status = PayClosed
	p.ClosedAt = at.UTC()
	return Applied
}
