package clients

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Wire types shared by the functions and their clients.

// LineJSON is an order or reservation line.
type LineJSON struct {
	ItemID     string `json:"itemId"`
	Quantity   int64  `json:"quantity"`
	PriceCents int64  `json:"priceCents,omitempty"`
}

// Wants turns requested lines into validated wants: a line may not carry a
// price (prices come from the catalog), and domain.CheckWants holds. Both
// CreateOrder's body and DeductStock's use it. Failures are
// *domain.InvalidError.
func Wants(lines []LineJSON) ([]domain.Want, error) {
	wants := make([]domain.Want, len(lines))
	for i, l := range lines {
		if l.PriceCents != 0 {
			return nil, domain.Invalidf("items[%d]: priceCents comes from the catalog, not the caller", i)
		}
		wants[i] = domain.Want{ItemID: l.ItemID, Quantity: l.Quantity}
	}
	if err := domain.CheckWants(wants); err != nil {
		return nil, err
	}
	return wants, nil
}

// OrderJSON is the contract's view of an order: CreateOrder's answers and
// the data of the order events.
type OrderJSON struct {
	OrderID      string     `json:"orderId"`
	UserID       string     `json:"userId"`
	Status       string     `json:"status"`
	Items        []LineJSON `json:"items"`
	TotalCents   int64      `json:"totalCents"`
	Deadline     string     `json:"deadline"`
	CreatedAt    string     `json:"createdAt"`
	PaidAt       string     `json:"paidAt,omitempty"`
	CancelledAt  string     `json:"cancelledAt,omitempty"`
	CancelReason string     `json:"cancelReason,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// OrderView converts an order to its wire form.
func OrderView(o domain.Order) OrderJSON {
	v := OrderJSON{OrderID: o.ID, UserID: o.UserID, Status: string(o.Status), TotalCents: o.TotalCents,
		Deadline: rfc3339(o.Deadline), CreatedAt: rfc3339(o.CreatedAt), PaidAt: rfc3339(o.PaidAt),
		CancelledAt: rfc3339(o.CancelledAt), CancelReason: o.CancelReason, Items: make([]LineJSON, len(o.Items))}
	for i, l := range o.Items {
		v.Items[i] = LineJSON(l)
	}
	return v
}

// DeductRequest is DeductStock's POST / body.
type DeductRequest struct {
	OrderID string     `json:"orderId"`
	Items   []LineJSON `json:"items"`
}

// DeductResponse is DeductStock's POST / answer: the lines taken, priced.
type DeductResponse struct {
	OrderID string     `json:"orderId"`
	Items   []LineJSON `json:"items"`
}

// OrderRef is a body holding only an order id.
type OrderRef struct {
	OrderID string `json:"orderId"`
}

// RestoreRequest is DeductStock's POST /restore body. OnlyIfNoOrder gives
// nothing back while an order with this id exists (saga compensation).
type RestoreRequest struct {
	OrderID       string `json:"orderId"`
	OnlyIfNoOrder bool   `json:"onlyIfNoOrder,omitempty"`
}

// RestoreResponse is DeductStock's POST /restore answer.
type RestoreResponse struct {
	OrderID  string `json:"orderId"`
	Restored bool   `json:"restored"`
}

// ClearRequest is ClearCart's POST / body.
type ClearRequest struct {
	UserID  string   `json:"userId"`
	ItemIDs []string `json:"itemIds"`
}

// PayOrderJSON is Pay's view of a pay order.
type PayOrderJSON struct {
	PayOrderID  string `json:"payOrderId"`
	BizOrderNo  string `json:"bizOrderNo"`
	Status      string `json:"status"`
	AmountCents int64  `json:"amountCents"`
	PaidAt      string `json:"paidAt,omitempty"`
}

// PayOrderView converts a pay order to its wire form.
func PayOrderView(p domain.PayOrder) PayOrderJSON {
	v := PayOrderJSON{PayOrderID: p.ID, BizOrderNo: p.BizOrderNo, Status: string(p.Status), AmountCents: p.AmountCents}
	if !p.PaidAt.IsZero() {
		v.PaidAt = p.PaidAt.UTC().Format(time.RFC3339Nano)
	}
	return v
}

// Stock calls DeductStock.
type Stock struct{ C *Client }

// Reserve deducts the wants for orderID (idempotent per order) and returns
// the lines priced from the catalog. The caller checked the wants with the
// same rules as DeductStock, so a 400 from it is about the priced order (a
// total that does not fit in int64 cents): it comes back as the
// *domain.InvalidError it was there, with nothing reserved.
func (s Stock) Reserve(ctx context.Context, orderID string, wants []domain.Want) ([]domain.OrderLine, error) {
	req := DeductRequest{OrderID: orderID}
	for _, w := range wants {
		req.Items = append(req.Items, LineJSON{ItemID: w.ItemID, Quantity: w.Quantity})
	}
	var resp DeductResponse
	if err := s.C.call(ctx, http.MethodPost, "/", req, &resp); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status == http.StatusBadRequest && se.Code == "INVALID_ARGUMENT" {
			return nil, &domain.InvalidError{Msg: se.Message}
		}
		return nil, err
	}
	lines := make([]domain.OrderLine, len(resp.Items))
	for i, l := range resp.Items {
		lines[i] = domain.OrderLine(l)
	}
	return lines, nil
}

// Restore gives orderID's stock back (at most once).
func (s Stock) Restore(ctx context.Context, orderID string) (bool, error) {
	var resp RestoreResponse
	err := s.C.call(ctx, http.MethodPost, "/restore", RestoreRequest{OrderID: orderID}, &resp)
	return resp.Restored, err
}

// Release gives orderID's stock back only if no live order has this id.
func (s Stock) Release(ctx context.Context, orderID string) (bool, error) {
	var resp RestoreResponse
	err := s.C.call(ctx, http.MethodPost, "/restore", RestoreRequest{OrderID: orderID, OnlyIfNoOrder: true}, &resp)
	return resp.Restored, err
}

// Cart calls ClearCart.
type Cart struct{ C *Client }

// Clear removes itemIDs from userID's cart (idempotent).
func (c Cart) Clear(ctx context.Context, userID string, itemIDs []string) error {
	return c.C.call(ctx, http.MethodPost, "/", ClearRequest{UserID: userID, ItemIDs: itemIDs}, nil)
}

// Pay calls Pay's internal routes.
type Pay struct{ C *Client }

// Query returns the pay order of orderID; domain.ErrNotFound when none.
func (p Pay) Query(ctx context.Context, orderID string) (domain.PayOrder, error) {
	var v PayOrderJSON
	if err := p.C.call(ctx, http.MethodGet, "/?bizOrderNo="+url.QueryEscape(orderID), nil, &v); err != nil {
		return domain.PayOrder{}, err
	}
	return v.domain()
}

// Close closes orderID's pay order unless it succeeded, and returns it.
func (p Pay) Close(ctx context.Context, orderID string) (domain.PayOrder, error) {
	var v PayOrderJSON
	if err := p.C.call(ctx, http.MethodPost, "/close", OrderRef{OrderID: orderID}, &v); err != nil {
		return domain.PayOrder{}, err
	}
	return v.domain()
}

// domain reads Pay's answer back; a status it does not know is a peer
// failure, never a guess.
func (v PayOrderJSON) domain() (domain.PayOrder, error) {
	p := domain.PayOrder{ID: v.PayOrderID, BizOrderNo: v.BizOrderNo, Status: domain.PayStatus(v.Status), AmountCents: v.AmountCents}
	switch p.Status {
	case domain.PayWaiting, domain.PaySuccess, domain.PayClosed:
	default:
		return domain.PayOrder{}, fmt.Errorf("%w: pay order %q in unknown status %q", domain.ErrUnavailable, v.BizOrderNo, v.Status)
	}
	if v.PaidAt != "" {
		t, err := time.Parse(time.RFC3339Nano, v.PaidAt)
		if err != nil {
			return domain.PayOrder{}, fmt.Errorf("%w: pay order %q paidAt %q: %w", domain.ErrUnavailable, v.BizOrderNo, v.PaidAt, err)
		}
		p.PaidAt = t
	}
	return p, nil
}
