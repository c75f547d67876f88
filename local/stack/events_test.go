package stack_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
)

// byID keeps one copy of each logical event (subscribers deduplicate by id).
func byID(evs []orderevents.Received) map[string]orderevents.Received {
	out := map[string]orderevents.Received{}
	for _, e := range evs {
		out[e.ID] = e
	}
	return out
}

func eventsOf(evs []orderevents.Received, orderID string) []orderevents.Received {
	var out []orderevents.Received
	for _, e := range byID(evs) {
		if e.Subject == orderID {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(evs []orderevents.Received, id string) bool {
	_, ok := byID(evs)[id]
	return ok
}

// checkEnvelope holds an event to the contract: structured JSON CloudEvent
// 1.0, subject the order id, the order as GET /{orderId} returns it.
func checkEnvelope(t *testing.T, e orderevents.Received, typ domain.EventType, status string) {
	t.Helper()
	if e.SpecVersion != "1.0" || e.Type != string(typ) || !strings.HasPrefix(e.Source, "//ordertimeout/") || e.Subject != e.Data.OrderID || e.Time.IsZero() ||
		e.ContentType != "application/json" || e.Attributes["content-type"] != orderevents.ContentType || e.Data.Status != status ||
		len(e.Data.Items) == 0 || e.Data.TotalCents <= 0 || e.Data.Deadline == "" || e.Data.UserID == "" {
		t.Errorf("event %s: %s", e.ID, e.Raw)
	}
}

// Every state change of an order is one event on the topic: created, paid,
// cancelled at the deadline and by the shopper (with its reason),
// deadline extended; the reminder REMIND_BEFORE the deadline comes for an
// unpaid order only, moves with an extension, and never comes for an
// order already decided. Each event's id is stable per change, and the
// outbox is empty once all are delivered.
func TestOrderEventsForEveryChange(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{Configure: func(c *config.Config) { c.RemindBefore = 2 * time.Second }})
	seedBasic(t, s)
	paid := create(t, s, "alice", 4, "i1", 1)
	timedOut := create(t, s, "alice", 3, "i2", 1)
	cancelled := create(t, s, "bob", 4, "i2", 1)
	extended := create(t, s, "alice", 4, "i1", 1)
	payOrder(t, s, "alice", paid.OrderID)
	if r := cancelOrder(s, "bob", cancelled.OrderID); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	newDeadline := time.Now().UTC().Add(8 * time.Second).Truncate(time.Millisecond)
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/extend", map[string]string{"orderId": extended.OrderID, "deadline": newDeadline.Format(time.RFC3339Nano)}, s.Internal()...); r.Status != 200 {
		t.Fatalf("extend: %d %s", r.Status, r.Body)
	}
	want := map[string]domain.EventType{
		paid.OrderID + ".created":        domain.EventCreated,
		paid.OrderID + ".paid":           domain.EventPaid,
		timedOut.OrderID + ".created":    domain.EventCreated,
		timedOut.OrderID + ".cancelled":  domain.EventCancelled,
		cancelled.OrderID + ".created":   domain.EventCreated,
		cancelled.OrderID + ".cancelled": domain.EventCancelled,
		extended.OrderID + ".created":    domain.EventCreated,
		extended.OrderID + ".cancelled":  domain.EventCancelled,
	}
	evs := s.WaitEvents(30*time.Second, func(evs []orderevents.Received) bool {
		for id := range want {
			if !hasEvent(evs, id) {
				return false
			}
		}
		return true
	})
	got := byID(evs)
	for id, typ := range want {
		status := map[domain.EventType]string{domain.EventCreated: "UNPAID", domain.EventPaid: "PAID", domain.EventCancelled: "CANCELLED"}[typ]
		checkEnvelope(t, got[id], typ, status)
	}
	// The source names the function that made the change.
	for id, want := range map[string]string{
		paid.OrderID + ".created": "//ordertimeout/CreateOrder", cancelled.OrderID + ".cancelled": "//ordertimeout/CreateOrder",
		timedOut.OrderID + ".cancelled": "//ordertimeout/HandleTimeout", paid.OrderID + ".paid": "//ordertimeout/HandleTimeout",
	} {
		if got[id].Source != want {
			t.Errorf("event %s: source %q, want %q", id, got[id].Source, want)
		}
	}
	if e := got[timedOut.OrderID+".cancelled"]; e.Data.CancelReason != domain.CancelPaymentTimeout || e.Data.CancelledAt == "" {
		t.Errorf("deadline cancel: %s", e.Raw)
	}
	if e := got[cancelled.OrderID+".cancelled"]; e.Data.CancelReason != domain.CancelUserCancelled {
		t.Errorf("shopper cancel: %s", e.Raw)
	}
	if e := got[paid.OrderID+".paid"]; e.Data.PaidAt == "" {
		t.Errorf("paid: %s", e.Raw)
	}

	// The extension and the reminders of the extended order.
	var ext, remind []orderevents.Received
	for _, e := range eventsOf(evs, extended.OrderID) {
		switch domain.EventType(e.Type) {
		case domain.EventExtended:
			ext = append(ext, e)
		case domain.EventApproaching:
			remind = append(remind, e)
		}
	}
	if len(ext) != 1 || ext[0].Data.Deadline != newDeadline.Format(time.RFC3339Nano) {
		t.Errorf("extension events %d: %v", len(ext), ext)
	}
	// Created with a 4 s deadline: its first reminder was due at 2 s, after
	// the extension (made at once), so only the new deadline's reminder
	// comes, before that deadline.
	if len(remind) != 1 || remind[0].Data.Deadline != newDeadline.Format(time.RFC3339Nano) || !remind[0].Time.Before(newDeadline) {
		t.Errorf("reminders of the extended order: %d %v", len(remind), remind)
	}
	for _, o := range []string{paid.OrderID, cancelled.OrderID} {
		for _, e := range eventsOf(evs, o) {
			if e.Type == string(domain.EventApproaching) {
				t.Errorf("a reminder for decided order %s: %s", o, e.Raw)
			}
		}
	}
	if r := eventsOf(evs, timedOut.OrderID); len(r) != 3 {
		t.Errorf("timed-out order: %d events (want created, approaching, cancelled): %v", len(r), r)
	}
	pending, err := s.Store.PendingEvents(context.Background(), time.Now().Add(time.Hour), 100)
	if err != nil || len(pending) != 0 {
		t.Fatalf("outbox after delivery: %d %v", len(pending), err)
	}
	validateEvents(t, s.Events())
}

// schemas compiles the order events' JSON Schemas (docs/events), by type.
func schemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	out := map[string]*jsonschema.Schema{}
	for _, typ := range domain.EventTypes {
		path, err := filepath.Abs(filepath.Join("..", "..", "docs", "events", string(typ)+".schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		if out[string(typ)], err = c.Compile(path); err != nil {
			t.Fatalf("schema of %s: %v", typ, err)
		}
	}
	return out
}

// validateEvents holds every event received to its type's JSON Schema.
func validateEvents(t *testing.T, evs []orderevents.Received) {
	t.Helper()
	sch := schemas(t)
	for _, e := range evs {
		s, ok := sch[e.Type]
		if !ok {
			t.Errorf("event %s of a type with no schema: %s", e.ID, e.Type)
			continue
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(e.Raw))
		if err == nil {
			err = s.Validate(inst)
		}
		if err != nil {
			t.Errorf("event %s does not match %s.schema.json: %v\n%s", e.ID, e.Type, err, e.Raw)
		}
	}
}
