package createorder

import (
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

// OrderJSON is the contract's view of an order (shared with the order events).
type OrderJSON = clients.OrderJSON

// ListJSON is the answer of GET /.
type ListJSON struct {
	Orders        []OrderJSON `json:"orders"`
	NextPageToken string      `json:"nextPageToken,omitempty"`
}

// View converts an order to its wire form.
func View(o domain.Order) OrderJSON { return clients.OrderView(o) }
