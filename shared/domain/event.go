package domain

import (
	"strconv"
	"time"
)

// EventType names an order event (a CloudEvent type on the order-events topic).
type EventType string

// The order events: one per state change of an order.
const (
	EventCreated     EventType = "orders.created.v1"
	EventPaid        EventType = "orders.paid.v1"
	EventCancelled   EventType = "orders.cancelled.v1"
	EventExtended    EventType = "orders.deadline.extended.v1"
	EventApproaching EventType = "orders.deadline.approaching.v1"
)

// EventTypes lists every order event type.
var EventTypes = []EventType{EventCreated, EventPaid, EventCancelled, EventExtended, EventApproaching}

// Event is one order event: the order as the change left it. Its ID is
// derived from the order and the change, so every copy of one logical
// event carries the same id and subscribers can deduplicate.
type Event struct {
	ID    string
	Type  EventType
	Time  time.Time
	Order Order
	// Source names the function that made the change (a CloudEvents
	// source, //ordertimeout/<function>).
	Source string
}

// Created is the event of a new order.
func Created(o Order) Event {
	return Event{ID: o.ID + ".created", Type: EventCreated, Time: o.CreatedAt, Order: o}
}

// EventOf returns the event of the change from before to after (an
// applied transition at now), if it is one subscribers are told of.
func EventOf(before, after Order, now time.Time) (Event, bool) {
	e := Event{Order: after, Time: now.UTC()}
	switch {
	case before.Status == OrderUnpaid && after.Status == OrderPaid:
		e.ID, e.Type, e.Time = after.ID+".paid", EventPaid, after.PaidAt
	case before.Status == OrderUnpaid && after.Status == OrderCancelled:
		e.ID, e.Type, e.Time = after.ID+".cancelled", EventCancelled, after.CancelledAt
	case after.Status == OrderUnpaid && after.Deadline.After(before.Deadline):
		e.ID, e.Type = after.ID+".extended."+strconv.FormatInt(after.Deadline.UnixMicro(), 10), EventExtended
	case after.Status == OrderUnpaid && !after.RemindedFor.IsZero() && !after.RemindedFor.Equal(before.RemindedFor):
		e.ID, e.Type = after.ID+".approaching."+strconv.FormatInt(after.RemindedFor.UnixMicro(), 10), EventApproaching
	default:
		return Event{}, false
	}
	return e, true
}
