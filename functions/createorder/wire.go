package createorder

import (
	"time"

	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Request is the body of POST /.
type Request struct {
	Items                 []clients.LineJSON `json:"items"`
	PaymentTimeoutSeconds *int64             `json:"paymentTimeoutSeconds,omitempty"`
}

// ExtendRequest is the body of POST /extend (internal): move an UNPAID
// order's deadline later, for example while a payment is in progress.
type ExtendRequest struct {
	OrderID  string `json:"orderId"`
	Deadline string `json:"deadline"`
}

// OrderJSON is the contract's view of an order.
type OrderJSON struct {
	OrderID      string             `json:"orderId"`
	UserID       string             `json:"userId"`
	Status       string             `json:"status"`
	Items        []clients.LineJSON `json:"items"`
	TotalCents   int64              `json:"totalCents"`
	Deadline     string             `json:"deadline"`
	CreatedAt    string             `json:"createdAt"`
	PaidAt       string             `json:"paidAt,omitempty"`
	CancelledAt  string             `json:"cancelledAt,omitempty"`
	CancelReason string             `json:"cancelReason,omitempty"`
}

// ListJSON is the answer of GET /.
type ListJSON struct {
	Orders        []OrderJSON `json:"orders"`
	NextPageToken string      `json:"nextPageToken,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// View converts an order to its wire form.
func View(o domain.Order) OrderJSON {
	v := OrderJSON{OrderID: o.ID, UserID: o.UserID, Status: string(o.Status), TotalCents: o.TotalCents,
		Deadline: rfc3339(o.Deadline), CreatedAt: rfc3339(o.CreatedAt), PaidAt: rfc3339(o.PaidAt),
		CancelledAt: rfc3339(o.CancelledAt), CancelReason: o.CancelReason, Items: make([]clients.LineJSON, len(o.Items))}
	for i, l := range o.Items {
		v.Items[i] = clients.LineJSON(l)
	}
	return v
}
