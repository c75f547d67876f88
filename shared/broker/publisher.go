package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message is one delayed message.
type Message struct {
	ID        string // stable; becomes the CloudEvent id, so receivers can dedupe
	Type      string // CloudEvent type
	Subject   string // order id
	Data      []byte // JSON
	DueAt     time.Time
	CreatedAt time.Time
	Attempt   int
	Trace     string // W3C traceparent, optional
	Reason    string // dead-letter reason, optional
}

// ErrNotConfirmed means the broker did not confirm a publish (nacked, or the
// connection failed before the confirm arrived): the message may be lost.
var ErrNotConfirmed = errors.New("publish not confirmed by the broker")

// Publishing builds the AMQP publishing for m.
func (m Message) Publishing(now time.Time) amqp.Publishing {
	h := amqp.Table{
		HeaderDueAt:   ceilMilli(m.DueAt),
		HeaderAttempt: int32(m.Attempt),
		HeaderType:    m.Type,
		HeaderSubject: m.Subject,
	}
	if !m.CreatedAt.IsZero() {
		h[HeaderFirstSeen] = m.CreatedAt.UnixMilli()
	}
	if m.Trace != "" {
		h[HeaderTrace] = m.Trace
	}
	if m.Reason != "" {
		h[HeaderReason] = m.Reason
	}
	return amqp.Publishing{
		Headers:      h,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Timestamp:    now,
		Body:         m.Data,
	}
}

// FromDelivery reads a message back from a delivery.
func FromDelivery(d amqp.Delivery) (Message, error) {
	m := Message{ID: d.MessageId, Data: d.Body}
	due, ok := toInt64(d.Headers[HeaderDueAt])
	if !ok {
		return m, fmt.Errorf("header %s missing or not an integer", HeaderDueAt)
	}
	m.DueAt = time.UnixMilli(due).UTC()
	if a, ok := toInt64(d.Headers[HeaderAttempt]); ok {
		m.Attempt = int(a)
	}
	if c, ok := toInt64(d.Headers[HeaderFirstSeen]); ok {
		m.CreatedAt = time.UnixMilli(c).UTC()
	}
	m.Type, _ = d.Headers[HeaderType].(string)
	m.Subject, _ = d.Headers[HeaderSubject].(string)
	m.Trace, _ = d.Headers[HeaderTrace].(string)
	m.Reason, _ = d.Headers[HeaderReason].(string)
	if m.ID == "" || m.Type == "" {
		return m, fmt.Errorf("message id or %s missing", HeaderType)
	}
	return m, nil
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	}
	return 0, false
}

// PublishOn publishes m on ch to where it must go next and waits until the
// broker confirmed it (and did not return it).
func PublishOn(ctx context.Context, ch *Channel, t Topology, m Message, now time.Time) error {
	wait, err := PublishAsync(ctx, ch, t, m, now)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// PublishAsync publishes m on ch to where it must go next and returns a
// function that waits for the broker's confirm.
func PublishAsync(ctx context.Context, ch *Channel, t Topology, m Message, now time.Time) (func(context.Context) error, error) {
	p := m.Publishing(now)
	ex, key := t.Route(m.DueAt.Sub(now))
	if ex == t.PluginExchange() {
		// The plugin routes only when the delay is over, so it returns
		// every mandatory publish at once (rabbitmq-delayed-message-exchange
		// issue 7): publish without the flag.
		p.Headers["x-delay"] = int64(min(m.DueAt.Sub(now), MaxPluginDelay) / time.Millisecond)
		return ch.publish(ctx, ex, key, false, m.ID, p)
	}
	return ch.publish(ctx, ex, key, true, m.ID, p)
}

// PublishRetryAsync publishes m on ch to the retry queue, whose consumer
// holds it until m.DueAt, and returns a function that waits for the
// broker's confirm.
func PublishRetryAsync(ctx context.Context, ch *Channel, t Topology, m Message, now time.Time) (func(context.Context) error, error) {
	return ch.publish(ctx, "", t.RetryQueue(), true, m.ID, m.Publishing(now))
}

// PublishDead puts m on the dead-letter queue with a reason.
func PublishDead(ctx context.Context, ch *Channel, t Topology, m Message, reason string, now time.Time) error {
	m.Reason = reason
	if err := ch.wait(ctx, "", t.DeadQueue(), true, m.ID, m.Publishing(now)); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	return nil
}

// Publisher publishes with confirms over one lazily opened connection. A
// failed connection is dropped and redialled by the next Publish; a failed
// dial is never cached. It is safe for concurrent use.
type Publisher struct {
	URL      string
	Topology Topology
	Now      func() time.Time

	mu   sync.Mutex
	conn *amqp.Connection
	ch   *Channel
}

// NewPublisher returns a publisher; it connects on first use.
func NewPublisher(url string, t Topology) *Publisher {
	return &Publisher{URL: url, Topology: t, Now: time.Now}
}

func (p *Publisher) channel() (*Channel, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch != nil && !p.ch.IsClosed() && p.conn != nil && !p.conn.IsClosed() {
		return p.ch, nil
	}
	p.closeLocked()
	conn, err := amqp.DialConfig(p.URL, amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("%w: dial broker: %w", ErrNotConfirmed, err)
	}
	var ch *Channel
	raw, err := conn.Channel()
	if err == nil {
		ch, err = NewChannel(raw)
	}
	if err == nil {
		err = p.Topology.Declare(raw)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: open channel: %w", ErrNotConfirmed, err)
	}
	p.conn, p.ch = conn, ch
	return ch, nil
}

// Publish sends m and returns only after the broker confirmed it.
func (p *Publisher) Publish(ctx context.Context, m Message) error {
	ch, err := p.channel()
	if err != nil {
		return err
	}
	if err := PublishOn(ctx, ch, p.Topology, m, p.Now()); err != nil {
		p.mu.Lock()
		if p.ch == ch {
			p.closeLocked()
		}
		p.mu.Unlock()
		return err
	}
	return nil
}

func (p *Publisher) closeLocked() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.conn, p.ch = nil, nil
}

// Close closes the connection.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
	return nil
}

// ceilMilli rounds up to the millisecond, so a due time read back from the
// header is never before the real one (a timer must never fire early).
func ceilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}
