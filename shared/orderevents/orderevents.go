// Package orderevents tells the rest of a shop what became of each order:
// every state change is a structured-mode CloudEvent (JSON, specversion
// 1.0) on one Pub/Sub topic. The store records each event in its change's
// transaction (the outbox); the Dispatcher publishes it right after the
// commit and removes it from the outbox, and Redeliver (the sweeper)
// publishes whatever a dead or failing writer left. A copy may be
// published twice; every copy of one logical event carries the same id.
package orderevents

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"cloud.google.com/go/pubsub/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/store"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// DefaultTopic is the topic's default name (EVENTS_TOPIC).
const DefaultTopic = "order-events"

// ContentType is the Pub/Sub attribute of a structured-mode CloudEvent.
const ContentType = "application/cloudevents+json"

// Encode renders ev as a structured-mode CloudEvent.
func Encode(ev domain.Event) ([]byte, error) {
	e := cloudevents.New(cloudevents.CloudEventsVersionV1)
	e.SetID(ev.ID)
	e.SetType(string(ev.Type))
	source := ev.Source
	if source == "" {
		source = store.DefaultSource
	}
	e.SetSource(source)
	e.SetSubject(ev.Order.ID)
	e.SetTime(ev.Time.UTC())
	if err := e.SetData("application/json", clients.OrderView(ev.Order)); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// Publisher publishes order events to one topic.
type Publisher struct {
	client *pubsub.Client
	pub    *pubsub.Publisher
}

// NewPublisher opens a client for the topic's project (PUBSUB_EMULATOR_HOST
// points it at the emulator). It outlives ctx, as the store's client does.
func NewPublisher(ctx context.Context, project, topic string) (*Publisher, error) {
	c, err := pubsub.NewClient(context.WithoutCancel(ctx), project)
	if err != nil {
		return nil, fmt.Errorf("pubsub client for project %q: %w", project, err)
	}
	p := c.Publisher(topic)
	p.PublishSettings.DelayThreshold = time.Millisecond
	return &Publisher{client: c, pub: p}, nil
}

// Publish publishes evs and waits for the topic to accept each; it returns
// the ids accepted, and the first error.
func (p *Publisher) Publish(ctx context.Context, evs []domain.Event) ([]string, error) {
	results := make([]*pubsub.PublishResult, len(evs))
	var first error
	for i, ev := range evs {
		data, err := Encode(ev)
		if err != nil {
			first = fmt.Errorf("encode event %s: %w", ev.ID, err)
			continue
		}
		results[i] = p.pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: map[string]string{
			"content-type": ContentType, "ce-type": string(ev.Type), "ce-id": ev.ID, "ce-subject": ev.Order.ID,
		}})
	}
	var ok []string
	for i, r := range results {
		if r == nil {
			continue
		}
		if _, err := r.Get(ctx); err != nil {
			if first == nil {
				first = fmt.Errorf("publish event %s: %w", evs[i].ID, err)
			}
			continue
		}
		ok = append(ok, evs[i].ID)
	}
	return ok, first
}

// Close flushes and closes the client.
func (p *Publisher) Close() error {
	p.pub.Stop()
	return p.client.Close()
}

// Outbox is what the dispatcher needs of the store.
type Outbox interface {
	PendingEvents(ctx context.Context, before time.Time, limit int) ([]store.PendingEvent, error)
	EventsDelivered(ctx context.Context, ids []string) error
}

// Dispatcher delivers recorded events: the store's EventSink.
type Dispatcher struct {
	Publisher interface {
		Publish(ctx context.Context, evs []domain.Event) ([]string, error)
	}
	Outbox Outbox
	Log    *slog.Logger
	// Metrics records what was published (nil: nowhere).
	Metrics *telemetry.Instruments
	// Timeout bounds one delivery after a commit (default 5 s); what does
	// not make it stays for Redeliver.
	Timeout time.Duration
}

func (d *Dispatcher) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return 5 * time.Second
}

// Deliver publishes events a change just committed and removes them from
// the outbox. It runs on its own bounded context: the change is made, so
// a caller who hung up must not stop its event.
func (d *Dispatcher) Deliver(ctx context.Context, evs []domain.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.timeout())
	defer cancel()
	d.publish(ctx, evs, "commit")
}

func (d *Dispatcher) publish(ctx context.Context, evs []domain.Event, path string) int {
	ok, err := d.Publisher.Publish(ctx, evs)
	if len(ok) > 0 {
		d.Metrics.EventsOut(ctx, path, len(ok))
		if derr := d.Outbox.EventsDelivered(ctx, ok); derr != nil {
			// Published but still in the outbox: a later sweep sends a
			// duplicate with the same id, which subscribers drop.
			d.log(ctx).Warn("events published but not removed from the outbox", "error", derr.Error())
		}
	}
	if err != nil {
		d.log(ctx).Warn("order events not published; the sweeper delivers them", "path", path, "count", len(evs)-len(ok), "error", err.Error())
	}
	return len(ok)
}

func (d *Dispatcher) log(ctx context.Context) *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return logging.From(ctx)
}

// Report is what one Redeliver did.
type Report struct {
	Delivered, Failed int
	// Oldest is the age of the oldest event found waiting (0: none).
	Oldest time.Duration
}

// Redeliver publishes events recorded more than `after` ago that are still
// in the outbox (their writer died or could not publish), up to limit.
func (d *Dispatcher) Redeliver(ctx context.Context, after time.Duration, limit int) (Report, error) {
	now := time.Now()
	pending, err := d.Outbox.PendingEvents(ctx, now.Add(-after), limit)
	if err != nil {
		return Report{}, err
	}
	var r Report
	evs := make([]domain.Event, len(pending))
	for i, p := range pending {
		evs[i] = p.Event
		r.Oldest = max(r.Oldest, now.Sub(p.RecordedAt))
	}
	if len(evs) > 0 {
		d.Metrics.OutboxWaited(ctx, r.Oldest)
		r.Delivered = d.publish(ctx, evs, "sweeper")
		r.Failed = len(evs) - r.Delivered
	}
	return r, nil
}
