package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// ColOutbox holds the order events recorded with the changes they tell of
// and not yet delivered (a transactional outbox): an event is written in
// the same transaction as its change, so none is lost when a function dies
// between its commit and its publish, and none exists for a change that
// did not commit. Delivered events are deleted; the sweeper delivers what
// a dead or failing writer left.
const ColOutbox = "outbox"

type outboxDoc struct {
	Type      string    `firestore:"type"`
	Source    string    `firestore:"source"`
	Time      time.Time `firestore:"time"`
	Order     orderDoc  `firestore:"order"`
	OrderID   string    `firestore:"orderId"`
	CreatedAt time.Time `firestore:"createdAt"`
	// ExpireAt is a backstop for Firestore's TTL policy: an event nobody
	// could deliver for this long is dropped.
	ExpireAt time.Time `firestore:"expireAt"`
}

// OutboxRetention is how long an undelivered event is kept.
const OutboxRetention = 30 * 24 * time.Hour

// EventSink delivers the events a committed change recorded (the
// order-events dispatcher). Deliver is called after the commit, with the
// caller's context; what it cannot deliver stays in the outbox.
type EventSink interface {
	Deliver(ctx context.Context, evs []domain.Event)
}

// SetEventSink turns order events on: every order change records its event
// in the outbox, and sink delivers it after the commit. Without a sink no
// event is recorded. Call it before the store serves requests.
func (s *Store) SetEventSink(sink EventSink) { s.sink = sink }

func (s *Store) outboxRef(eventID string) *firestore.DocumentRef {
	return s.c.Collection(ColOutbox).Doc(eventID)
}

// sourceKey is the context key of the function whose request changes
// orders (WithSource).
type sourceKey struct{}

// WithSource marks ctx as a request of function name: the order events its
// changes record name it as their source.
func WithSource(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, sourceKey{}, name)
}

// DefaultSource is an event's source when no function is known.
const DefaultSource = "//ordertimeout"

func sourceOf(ctx context.Context) string {
	if name, ok := ctx.Value(sourceKey{}).(string); ok && name != "" {
		return DefaultSource + "/" + name
	}
	return DefaultSource
}

// record writes ev to the outbox in t (when events are on).
func (s *Store) record(t *firestore.Transaction, ev domain.Event) error {
	if s.sink == nil {
		return nil
	}
	now := s.now()
	return t.Set(s.outboxRef(ev.ID), outboxDoc{
		Type: string(ev.Type), Source: ev.Source, Time: ev.Time.UTC(), Order: toOrderDoc(ev.Order), OrderID: ev.Order.ID,
		CreatedAt: now, ExpireAt: now.Add(OutboxRetention),
	})
}

// crashAfterCommit, set only in builds with the crashaftercommit tag (the
// crash test's), ends the process right after a commit, before delivery.
var crashAfterCommit func(domain.Event)

// deliver hands a committed change's event to the sink.
func (s *Store) deliver(ctx context.Context, ev domain.Event) {
	if crashAfterCommit != nil {
		crashAfterCommit(ev)
	}
	if s.sink != nil {
		s.sink.Deliver(ctx, []domain.Event{ev})
	}
}

// PendingEvent is an event still in the outbox.
type PendingEvent struct {
	domain.Event
	RecordedAt time.Time
}

// PendingEvents returns up to limit events recorded before `before` and
// not yet delivered. The outbox holds only undelivered events, so it is
// read in document order without an index.
func (s *Store) PendingEvents(ctx context.Context, before time.Time, limit int) ([]PendingEvent, error) {
	var out []PendingEvent
	q := s.c.Collection(ColOutbox).OrderBy(firestore.DocumentID, firestore.Asc).Limit(500)
	var last *firestore.DocumentSnapshot
	for len(out) < limit {
		page := q
		if last != nil {
			page = q.StartAfter(last.Ref.ID)
		}
		docs, err := page.Documents(ctx).GetAll()
		if err != nil {
			return nil, classify(err)
		}
		for _, d := range docs {
			var od outboxDoc
			if err := d.DataTo(&od); err != nil {
				return nil, fmt.Errorf("decode outbox entry %q: %w", d.Ref.ID, err)
			}
			if od.CreatedAt.Before(before) && len(out) < limit {
				out = append(out, PendingEvent{Event: domain.Event{ID: d.Ref.ID, Type: domain.EventType(od.Type), Source: od.Source, Time: od.Time.UTC(), Order: od.Order.domain(od.OrderID)}, RecordedAt: od.CreatedAt.UTC()})
			}
		}
		if len(docs) < 500 {
			break
		}
		last = docs[len(docs)-1]
	}
	return out, nil
}

// EventsDelivered removes delivered events from the outbox.
func (s *Store) EventsDelivered(ctx context.Context, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), 500)
		chunk := ids[:n]
		err := s.tx(ctx, func(t *firestore.Transaction) error {
			for _, id := range chunk {
				if err := t.Delete(s.outboxRef(id)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("remove delivered events: %w", err)
		}
		ids = ids[n:]
	}
	return nil
}
