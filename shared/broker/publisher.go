package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

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
	ex, key, mandatory, p := t.Envelope(m, now)
	return ch.publish(ctx, ex, key, mandatory, m.ID, p)
}

// Envelope says where m goes next at now and how: the exchange and routing
// key, whether the publish is mandatory, and the AMQP message.
func (t Topology) Envelope(m Message, now time.Time) (ex, key string, mandatory bool, p amqp.Publishing) {
	p = m.Publishing()
	ex, key = t.Route(m.DueAt.Sub(now))
	if ex == t.PluginExchange() {
		// The plugin routes only when the delay is over, so it returns
		// every mandatory publish at once (rabbitmq-delayed-message-exchange
		// issue 7): publish without the flag.
		p.Headers["x-delay"] = int64(min(m.DueAt.Sub(now), MaxPluginDelay) / time.Millisecond)
		return ex, key, false, p
	}
	if t.Mode == ModeNative && m.DueAt.After(now) {
		p.Headers[NativeHeader] = now.Add(min(m.DueAt.Sub(now), MaxNativeDelay)).UnixMilli()
	}
	return ex, key, true, p
}

// CheckServer refuses a broker that cannot run t's mode: native mode needs
// RabbitMQ 4.4 or later (an older quorum queue delivers at once, and the
// relay would park the message again and again).
func (t Topology) CheckServer(conn *amqp.Connection) error {
	if t.Mode != ModeNative {
		return nil
	}
	v, _ := conn.Properties["version"].(string)
	if !AtLeast(v, 4, 4) {
		return fmt.Errorf("BROKER_MODE=native needs RabbitMQ 4.4 or later (quorum queues that hold a message until its %s); this broker is %q: use BROKER_MODE=ladder", NativeHeader, v)
	}
	return nil
}

// AtLeast reports whether version ("4.4.0", "4.4.0-dev", "3.10.8") is at
// least major.minor.
func AtLeast(version string, major, minor int) bool {
	var ma, mi int
	if n, _ := fmt.Sscanf(version, "%d.%d", &ma, &mi); n != 2 {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// PublishRetryAsync publishes m on ch to the retry queue, whose consumer
// holds it until m.DueAt, and returns a function that waits for the
// broker's confirm.
func PublishRetryAsync(ctx context.Context, ch *Channel, t Topology, m Message) (func(context.Context) error, error) {
	return ch.publish(ctx, "", t.RetryQueue(), true, m.ID, m.Publishing())
}

// PublishDead puts m on the dead-letter queue with a reason.
func PublishDead(ctx context.Context, ch *Channel, t Topology, m Message, reason string) error {
	m.Reason = reason
	p := m.Publishing()
	p.Timestamp = time.Now().UTC() // AMQP timestamps are whole seconds
	if err := ch.wait(ctx, "", t.DeadQueue(), true, m.ID, p); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	return nil
}

// Publisher publishes with confirms over one lazily opened connection. A
// failed connection is dropped and redialled by the next Publish; a failed
// dial is never cached. It is safe for concurrent use.
//
// One dial runs at a time, in the background with bounds of its own
// (DialTimeout per broker, SetupTimeout for the channel and topology);
// callers wait for it only as long as their context lives, so a broker
// that accepts connections and never answers costs each caller its own
// deadline at most, never the sum of everyone's dials.
type Publisher struct {
	URL      string
	Topology Topology
	Now      func() time.Time
	// Timeout bounds one Publish when the caller's context allows longer
	// (default DefaultPublishTimeout): a create whose broker does not
	// answer fails promptly rather than holding its shopper.
	Timeout time.Duration

	mu     sync.Mutex
	conn   *amqp.Connection
	ch     *Channel
	dial   *dialing // the dial in flight, if any
	closed bool
	// published counts confirmed publishes (broker.published, by type):
	// the broker messages an order's functions send; count, the same in all.
	published metric.Int64Counter
	count     atomic.Int64
}

// Bounds of a publisher's connection and of one publish.
const (
	DialTimeout           = 5 * time.Second
	SetupTimeout          = 5 * time.Second
	DefaultPublishTimeout = 10 * time.Second
)

// dialing is one connection attempt that callers wait for.
type dialing struct {
	done chan struct{}
	ch   *Channel
	err  error
}

// NewPublisher returns a publisher; it connects on first use.
func NewPublisher(url string, t Topology) *Publisher {
	published, _ := otel.Meter(telemetry.Name).Int64Counter("broker.published",
		metric.WithDescription("Messages the functions published and the broker confirmed, by CloudEvent type."))
	return &Publisher{URL: url, Topology: t, Now: time.Now, published: published}
}

// Published returns how many messages this publisher published and the
// broker confirmed.
func (p *Publisher) Published() int64 { return p.count.Load() }

// channel returns the publishing channel, starting a dial when there is
// none and no dial is under way, and waiting for it while ctx lives.
func (p *Publisher) channel(ctx context.Context) (*Channel, error) {
	p.mu.Lock()
	if p.ch != nil && !p.ch.IsClosed() && p.conn != nil && !p.conn.IsClosed() {
		ch := p.ch
		p.mu.Unlock()
		return ch, nil
	}
	d := p.dial
	if d == nil {
		p.closeLocked()
		d = &dialing{done: make(chan struct{})}
		p.dial = d
		go p.connect(d)
	}
	p.mu.Unlock()
	select {
	case <-d.done:
		return d.ch, d.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the broker connection: %w", ErrNotConfirmed, ctx.Err())
	}
}

// connect dials, opens the confirming channel and declares the topology,
// each bounded, and hands the result to everyone waiting on d.
func (p *Publisher) connect(d *dialing) {
	defer close(d.done)
	conn, err := Dial(p.URL, DialTimeout)
	if err != nil {
		d.err = fmt.Errorf("%w: dial broker: %w", ErrNotConfirmed, err)
		p.mu.Lock()
		p.dial = nil
		p.mu.Unlock()
		return
	}
	// A broker that took the connection but stalls would block the channel
	// open or a declare forever: closing the connection ends them.
	stall := time.AfterFunc(SetupTimeout, func() { _ = conn.Close() })
	var ch *Channel
	raw, err := conn.Channel()
	if err == nil {
		ch, err = NewChannel(raw)
	}
	if err == nil {
		err = p.Topology.CheckServer(conn)
	}
	if err == nil {
		err = p.Topology.Declare(raw)
	}
	if !stall.Stop() && err == nil {
		err = fmt.Errorf("broker setup took over %v", SetupTimeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dial = nil
	if err == nil && p.closed {
		err = errors.New("publisher closed")
	}
	if err != nil {
		_ = conn.Close()
		d.err = fmt.Errorf("%w: open channel: %w", ErrNotConfirmed, err)
		return
	}
	p.conn, p.ch = conn, ch
	d.ch = ch
}

// publishAttempts bounds how often Publish tries one message.
const publishAttempts = 8

// Publish sends m and returns only after the broker confirmed it. A publish
// whose channel broke under it (a broker node died, the connection
// dropped) is tried again on a new connection — Dial moves on to the next
// node — and one the broker nacked (its quorum queues electing a leader
// after a node loss) is tried again too, backing off from 50 ms to 1 s,
// while ctx lives, up to publishAttempts times in all: a message published
// twice is harmless (every receiver decides by state), while one not
// published fails its create. Any other failure (the caller gave up, the
// broker returned it) is returned at once.
func (p *Publisher) Publish(ctx context.Context, m Message) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultPublishTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		broken, err := p.publishOnce(ctx, m)
		if err == nil {
			p.count.Add(1)
			if p.published != nil {
				p.published.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attribute.String("type", m.Type)))
			}
		}
		if err == nil || !broken || attempt == publishAttempts || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(50*time.Millisecond<<(attempt-1), time.Second)):
		}
	}
}

// publishOnce publishes m once and says, on failure, whether to try again
// on a new connection: the channel broke, or the broker nacked.
func (p *Publisher) publishOnce(ctx context.Context, m Message) (broken bool, err error) {
	ch, err := p.channel(ctx)
	if err != nil {
		return ctx.Err() == nil, err
	}
	if err := PublishOn(ctx, ch, p.Topology, m, p.Now()); err != nil {
		if errors.Is(err, ErrReturned) {
			// A queue or binding of the topology is gone: declare it again
			// on a channel of its own, for the next publish (this one
			// failed, and its caller retries or compensates).
			if derr := p.redeclare(); derr != nil {
				return false, fmt.Errorf("%w (and declaring the topology again failed: %w)", err, derr)
			}
			return false, err
		}
		// A closed channel (and with it, maybe, the connection) is really
		// broken. A nacked publish is treated alike: after a node loss a
		// channel can keep being nacked while a new one is confirmed
		// (docs/design.md, "Timers: the delay ladder"). Either way the next
		// attempt dials again; publishes in flight on this channel fail as
		// broken and are tried again too.
		// A publish that failed only because its caller gave up (ctx
		// ended) leaves the channel alone: closing it would fail every
		// other caller's confirm in flight.
		if errors.Is(err, ErrNacked) || ch.IsClosed() {
			p.mu.Lock()
			if p.ch == ch {
				p.closeLocked()
			}
			p.mu.Unlock()
			return true, err
		}
		return false, err
	}
	return false, nil
}

// redeclare declares the topology again on a short-lived channel of the
// current connection, leaving the publishing channel and its confirms in
// flight alone.
func (p *Publisher) redeclare() error {
	p.mu.Lock()
	conn := p.conn
	p.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		return nil // the next Publish dials and declares
	}
	raw, err := conn.Channel()
	if err != nil {
		return err
	}
	defer raw.Close()
	return p.Topology.Declare(raw)
}

func (p *Publisher) closeLocked() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.conn, p.ch = nil, nil
}

// Close closes the connection; a dial under way is dropped when it ends.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.closeLocked()
	return nil
}
