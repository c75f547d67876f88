// Package events defines the CloudEvents that travel through the broker and
// the relay to HandleTimeout, and builds their broker messages.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// CloudEvent types.
const (
	// TypeTimeoutDue: an order's payment deadline came.
	TypeTimeoutDue = "orders.timeout.due.v1"
	// TypePaymentSucceeded: Pay's announcement that an order was paid.
	TypePaymentSucceeded = "orders.payment.succeeded.v1"
	// TypePaymentCheck: an early check of an unpaid order's payment.
	TypePaymentCheck = "orders.payment.check.v1"
	// TypeReminderDue: REMIND_BEFORE an order's deadline, time to tell
	// the shop (orders.deadline.approaching.v1) if it is still unpaid.
	TypeReminderDue = "orders.deadline.remind.v1"
)

// Source is the CloudEvent source the relay sets.
const Source = "//ordertimeout/relay"

// TimeoutData is the data of TypeTimeoutDue and TypePaymentCheck.
type TimeoutData struct {
	OrderID  string `json:"orderId"`
	Deadline string `json:"deadline"`
}

// PaidData is the data of TypePaymentSucceeded.
type PaidData struct {
	OrderID    string `json:"orderId"`
	PayOrderID string `json:"payOrderId"`
}

// Timeout builds the timer message of orderID for deadline. Its id is stable
// per (order, deadline), so a re-publish is recognisable.
func Timeout(orderID string, deadline, now time.Time, trace string) broker.Message {
	return deadlineTimer("timeout-"+orderID+"-"+strconv.FormatInt(deadline.UnixMilli(), 10), TypeTimeoutDue, orderID, deadline, deadline, now, trace)
}

// Check builds an early payment check of orderID at `at`.
func Check(orderID string, deadline, at, now time.Time, trace string) broker.Message {
	return deadlineTimer("check-"+orderID+"-"+strconv.FormatInt(at.UnixMilli(), 10), TypePaymentCheck, orderID, deadline, at, now, trace)
}

// Reminder builds the reminder of orderID's deadline, due at `at`; its id
// is stable per (order, deadline).
func Reminder(orderID string, deadline, at, now time.Time, trace string) broker.Message {
	return deadlineTimer("remind-"+orderID+"-"+strconv.FormatInt(deadline.UnixMilli(), 10), TypeReminderDue, orderID, deadline, at, now, trace)
}

// deadlineTimer is a timer message of type typ about orderID's deadline,
// due at `at`.
func deadlineTimer(id, typ, orderID string, deadline, at, now time.Time, trace string) broker.Message {
	data, _ := json.Marshal(TimeoutData{OrderID: orderID, Deadline: deadline.UTC().Format(time.RFC3339Nano)})
	return broker.Message{ID: id, Type: typ, Subject: orderID, Data: data, DueAt: at, CreatedAt: now, Trace: trace}
}

// Paid builds the payment announcement of orderID, due at once.
func Paid(orderID, payOrderID string, now time.Time, trace string) broker.Message {
	data, _ := json.Marshal(PaidData{OrderID: orderID, PayOrderID: payOrderID})
	return broker.Message{
		ID:        "paid-" + orderID,
		Type:      TypePaymentSucceeded,
		Subject:   orderID,
		Data:      data,
		DueAt:     now,
		CreatedAt: now,
		Trace:     trace,
	}
}

// ParseTimeout validates TimeoutData; every failure is a *domain.InvalidError.
func ParseTimeout(raw []byte) (orderID string, deadline time.Time, err error) {
	var d TimeoutData
	if err := json.Unmarshal(raw, &d); err != nil {
		return "", time.Time{}, domain.Invalidf("event data is not a JSON object with the expected fields")
	}
	if err := domain.CheckID("orderId", d.OrderID); err != nil {
		return "", time.Time{}, err
	}
	deadline, err = time.Parse(time.RFC3339Nano, d.Deadline)
	if err != nil {
		return "", time.Time{}, domain.Invalidf("deadline %q is not an RFC 3339 time", d.Deadline)
	}
	return d.OrderID, deadline.UTC(), nil
}

// ParsePaid validates PaidData.
func ParsePaid(raw []byte) (string, error) {
	var d PaidData
	if err := json.Unmarshal(raw, &d); err != nil {
		return "", domain.Invalidf("event data is not a JSON object with the expected fields")
	}
	if err := domain.CheckID("orderId", d.OrderID); err != nil {
		return "", fmt.Errorf("payment event: %w", err)
	}
	return d.OrderID, nil
}

// Publisher is a confirmed publish (broker.Publisher).
type Publisher interface {
	Publish(ctx context.Context, m broker.Message) error
}

// Timers schedules an order's timers and announcements as broker
// messages, each continuing the trace of ctx: the adapter behind the
// application's Timers ports (ordering, timeout, Pay).
type Timers struct {
	Publisher Publisher
	Now       func() time.Time // default time.Now
}

func (t Timers) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// ScheduleTimeout schedules orderID's deadline check, confirmed.
func (t Timers) ScheduleTimeout(ctx context.Context, orderID string, deadline time.Time) error {
	return t.Publisher.Publish(ctx, Timeout(orderID, deadline, t.now(), telemetry.Inject(ctx)))
}

// ScheduleCheck schedules an early payment check of orderID at `at`.
func (t Timers) ScheduleCheck(ctx context.Context, orderID string, deadline, at time.Time) error {
	return t.Publisher.Publish(ctx, Check(orderID, deadline, at, t.now(), telemetry.Inject(ctx)))
}

// ScheduleReminder schedules the reminder of orderID's deadline at `at`.
func (t Timers) ScheduleReminder(ctx context.Context, orderID string, deadline, at time.Time) error {
	return t.Publisher.Publish(ctx, Reminder(orderID, deadline, at, t.now(), telemetry.Inject(ctx)))
}

// AnnouncePaid announces that orderID was paid with payOrderID at paidAt.
func (t Timers) AnnouncePaid(ctx context.Context, orderID, payOrderID string, paidAt time.Time) error {
	return t.Publisher.Publish(ctx, Paid(orderID, payOrderID, paidAt, telemetry.Inject(ctx)))
}
