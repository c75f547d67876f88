package store

import (
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// Storage DTOs: the only place that knows Firestore field names.

type lineDoc struct {
	ItemID     string `firestore:"itemId"`
	Quantity   int64  `firestore:"quantity"`
	PriceCents int64  `firestore:"priceCents"`
}

func toLineDocs(ls []domain.OrderLine) []lineDoc {
	out := make([]lineDoc, len(ls))
	for i, l := range ls {
		out[i] = lineDoc(l)
	}
	return out
}

func fromLineDocs(ls []lineDoc) []domain.OrderLine {
	out := make([]domain.OrderLine, len(ls))
	for i, l := range ls {
		out[i] = domain.OrderLine(l)
	}
	return out
}

// ts stores a zero time as an absent field.
func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func unts(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

type itemDoc struct {
	Name       string `firestore:"name"`
	PriceCents int64  `firestore:"priceCents"`
	Stock      int64  `firestore:"stock"`            // K = 1: the stock; K > 1: 0
	Shards     int    `firestore:"shards,omitempty"` // K; absent: 1
	// MaxPerShopper: absent, no limit.
	MaxPerShopper int64 `firestore:"maxPerShopper,omitempty"`
}

// shardDoc is one shard of an item's stock (items/{id}/shards/{k}).
type shardDoc struct {
	Stock int64 `firestore:"stock"`
}

type takeDoc struct {
	ItemID   string `firestore:"itemId"`
	Shard    int    `firestore:"shard"`
	Quantity int64  `firestore:"quantity"`
}

type reservationDoc struct {
	Lines      []lineDoc  `firestore:"lines"`
	Takes      []takeDoc  `firestore:"takes,omitempty"`
	State      string     `firestore:"state"`
	CreatedAt  time.Time  `firestore:"createdAt"`
	RestoredAt *time.Time `firestore:"restoredAt,omitempty"`
	SweepShard int        `firestore:"sweepShard"`
}

func toReservationDoc(r domain.Reservation) reservationDoc {
	d := reservationDoc{Lines: toLineDocs(r.Lines), State: string(r.State), CreatedAt: r.CreatedAt.UTC(), RestoredAt: ts(r.RestoredAt), SweepShard: sweepShard(r.OrderID)}
	for _, t := range r.Takes {
		d.Takes = append(d.Takes, takeDoc(t))
	}
	return d
}

func (d reservationDoc) domain(orderID string) domain.Reservation {
	r := domain.Reservation{OrderID: orderID, Lines: fromLineDocs(d.Lines), State: domain.ReservationState(d.State), CreatedAt: d.CreatedAt.UTC(), RestoredAt: unts(d.RestoredAt)}
	for _, t := range d.Takes {
		r.Takes = append(r.Takes, domain.Take(t))
	}
	return r
}

type orderDoc struct {
	UserID       string     `firestore:"userId"`
	Status       string     `firestore:"status"`
	Items        []lineDoc  `firestore:"items"`
	TotalCents   int64      `firestore:"totalCents"`
	Deadline     time.Time  `firestore:"deadline"`
	CreatedAt    time.Time  `firestore:"createdAt"`
	PaidAt       *time.Time `firestore:"paidAt,omitempty"`
	CancelledAt  *time.Time `firestore:"cancelledAt,omitempty"`
	CancelReason string     `firestore:"cancelReason,omitempty"`
	SweepShard   int        `firestore:"sweepShard"`
	RemindedFor  *time.Time `firestore:"remindedFor,omitempty"`
	// ExpireAt is when Firestore's TTL policy may delete a decided order
	// (ORDER_RETENTION after its decision); absent while UNPAID.
	ExpireAt *time.Time `firestore:"expireAt,omitempty"`
}

func toOrderDoc(o domain.Order) orderDoc {
	return orderDoc{
		UserID: o.UserID, Status: string(o.Status), Items: toLineDocs(o.Items), TotalCents: o.TotalCents,
		Deadline: o.Deadline.UTC(), CreatedAt: o.CreatedAt.UTC(), PaidAt: ts(o.PaidAt), CancelledAt: ts(o.CancelledAt),
		CancelReason: o.CancelReason, SweepShard: sweepShard(o.ID), RemindedFor: ts(o.RemindedFor),
	}
}

func (d orderDoc) domain(id string) domain.Order {
	return domain.Order{
		ID: id, UserID: d.UserID, Status: domain.OrderStatus(d.Status), Items: fromLineDocs(d.Items), TotalCents: d.TotalCents,
		Deadline: d.Deadline.UTC(), CreatedAt: d.CreatedAt.UTC(), PaidAt: unts(d.PaidAt), CancelledAt: unts(d.CancelledAt),
		CancelReason: d.CancelReason, RemindedFor: unts(d.RemindedFor),
	}
}

type payOrderDoc struct {
	PayOrderID  string     `firestore:"payOrderId"`
	UserID      string     `firestore:"userId"`
	AmountCents int64      `firestore:"amountCents"`
	Status      string     `firestore:"status"`
	CreatedAt   time.Time  `firestore:"createdAt"`
	PaidAt      *time.Time `firestore:"paidAt,omitempty"`
	ClosedAt    *time.Time `firestore:"closedAt,omitempty"`
}

func toPayOrderDoc(p domain.PayOrder) payOrderDoc {
	return payOrderDoc{PayOrderID: p.ID, UserID: p.UserID, AmountCents: p.AmountCents, Status: string(p.Status), CreatedAt: p.CreatedAt.UTC(), PaidAt: ts(p.PaidAt), ClosedAt: ts(p.ClosedAt)}
}

func (d payOrderDoc) domain(bizOrderNo string) domain.PayOrder {
	return domain.PayOrder{ID: d.PayOrderID, BizOrderNo: bizOrderNo, UserID: d.UserID, AmountCents: d.AmountCents, Status: domain.PayStatus(d.Status), CreatedAt: d.CreatedAt.UTC(), PaidAt: unts(d.PaidAt), ClosedAt: unts(d.ClosedAt)}
}

type walletDoc struct {
	BalanceCents int64 `firestore:"balanceCents"`
}

type cartLineDoc struct {
	ItemID   string `firestore:"itemId"`
	Quantity int64  `firestore:"quantity"`
}

type cartDoc struct {
	Lines []cartLineDoc `firestore:"lines"`
}
