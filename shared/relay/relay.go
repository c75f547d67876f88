// Package relay moves due messages from RabbitMQ to the HandleTimeout
// function as CloudEvents (binary HTTP mode). It acks a message only after
// the target answered 2xx, or after the message was re-published (not yet
// due, or to be retried later) or dead-lettered with broker confirms, so a
// crash at any point loses nothing (a message may be delivered twice; the
// CloudEvent id is stable so the receiver can tell).
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// Options configure a relay.
type Options struct {
	AMQPURL     string
	Topology    broker.Topology
	Target      string // HandleTimeout's URL
	Concurrency int    // deliveries in parallel
	Prefetch    int    // unacked messages per consumer (>= Concurrency; covers held ones)
	MaxAttempts int    // delivery attempts before the dead-letter queue
	BackoffBase time.Duration
	BackoffMax  time.Duration
	HTTPTimeout time.Duration
	Drain       time.Duration // on shutdown, how long in-flight deliveries may finish
	// HoldRetry: retries due within this wait in memory (unacked) instead
	// of a trip through the broker (default 2 s).
	HoldRetry time.Duration
	Signer    auth.Signer
	// Token, when set, is sent as the CloudEvent extension internaltoken
	// (local/test mode).
	Token string
	Log   *slog.Logger
	Now   func() time.Time
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.Prefetch < o.Concurrency {
		o.Prefetch = max(o.Concurrency*8, 2000)
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 20
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.HTTPTimeout <= 0 {
		o.HTTPTimeout = 30 * time.Second
	}
	if o.Drain <= 0 {
		o.Drain = 20 * time.Second
	}
	if o.HoldRetry <= 0 {
		o.HoldRetry = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Relay is one relay process.
type Relay struct {
	opt       Options
	poster    *poster
	posterErr error
	Metrics   *Metrics
}

// New builds a relay. A bad target URL makes Run fail at once.
func New(opt Options) *Relay {
	opt.defaults()
	p, err := newPoster(opt.Target, opt.HTTPTimeout, opt.Signer, opt.Token)
	return &Relay{opt: opt, poster: p, posterErr: err, Metrics: &Metrics{}}
}

// Run relays until ctx is cancelled, reconnecting after any broker failure.
// On cancellation it stops consuming, lets in-flight deliveries finish
// within the drain deadline, and returns nil.
func (r *Relay) Run(ctx context.Context) error {
	if r.posterErr != nil {
		return r.posterErr
	}
	backoff := 250 * time.Millisecond
	for {
		started := time.Now()
		err := r.session(ctx)
		r.Metrics.Connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > 30*time.Second {
			backoff = 250 * time.Millisecond
		}
		r.opt.Log.Warn("broker session ended; reconnecting", "error", errString(err), "in", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
		r.Metrics.Reconnects.Add(1)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// session is one connection's life: a confirm-mode channel to re-publish,
// a consumer channel, the workers, and the messages waiting in memory.
type session struct {
	r     *Relay
	ctx   context.Context
	pub   *amqp.Channel
	ack   *acker
	jobs  chan job
	stop  chan struct{}
	mu    sync.Mutex
	timer map[*time.Timer]job
	done  bool // set by release: no more holds
	held  sync.WaitGroup
}

// job is a delivery with its message, read once when it arrives. A retry
// held in memory carries its attempt count here; the broker's copy keeps
// the older count, which a crash would redeliver.
type job struct {
	d   amqp.Delivery
	m   broker.Message
	err error // the message could not be read
}

// hold keeps j unacked in memory for wait, then hands it to the workers;
// on shutdown it goes back to the queue. Messages due within the shortest
// tier and short retries wait here instead of taking a trip through the
// broker; the broker still holds them (unacked), so a crash loses nothing.
func (s *session) hold(j job, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		// Shutting down (a worker's retry during the drain): back to the
		// queue now, never onto the closed work queue later.
		s.ack.requeue(j.d.DeliveryTag)
		s.r.Metrics.InFlight.Add(-1)
		return
	}
	s.r.Metrics.Held.Add(1)
	s.held.Add(1)
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		s.mu.Lock()
		_, ok := s.timer[t]
		delete(s.timer, t)
		s.mu.Unlock()
		s.r.Metrics.Held.Add(-1)
		defer s.held.Done()
		if !ok {
			return
		}
		select {
		case s.jobs <- j:
		case <-s.stop:
			s.ack.requeue(j.d.DeliveryTag)
			s.r.Metrics.InFlight.Add(-1)
		}
	})
	s.timer[t] = j
}

// release returns every waiting message to the queue.
func (s *session) release() {
	close(s.stop)
	s.mu.Lock()
	s.done = true
	for t, j := range s.timer {
		if t.Stop() {
			delete(s.timer, t)
			s.ack.requeue(j.d.DeliveryTag)
			s.r.Metrics.InFlight.Add(-1)
			s.r.Metrics.Held.Add(-1)
			s.held.Done()
		}
	}
	s.mu.Unlock()
	s.held.Wait()
}

// dispatch takes a delivery from the broker.
func (s *session) dispatch(d amqp.Delivery) {
	s.r.Metrics.InFlight.Add(1)
	if d.Redelivered {
		s.r.Metrics.Redelivered.Add(1)
	}
	j := job{d: d}
	j.m, j.err = broker.FromDelivery(d)
	if j.err == nil {
		if wait := j.m.DueAt.Sub(s.r.opt.Now()); wait > 0 && wait < broker.TierBase {
			s.hold(j, wait)
			return
		}
	}
	s.jobs <- j
}

func (r *Relay) session(ctx context.Context) error {
	conn, err := amqp.DialConfig(r.opt.AMQPURL, amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("publish channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	if err := r.opt.Topology.Declare(pub); err != nil {
		return err
	}
	returns := pub.NotifyReturn(make(chan amqp.Return, 16))
	go func() {
		for ret := range returns {
			r.opt.Log.Error("message returned unroutable", "message_id", ret.MessageId, "exchange", ret.Exchange, "key", ret.RoutingKey)
		}
	}()
	cons, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("consume channel: %w", err)
	}
	if err := cons.Qos(r.opt.Prefetch, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	const tag = "relay"
	deliveries, err := cons.Consume(r.opt.Topology.DueQueue(), tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", r.opt.Topology.DueQueue(), err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	r.Metrics.Connected.Store(true)
	r.opt.Log.Info("relay consuming", "queue", r.opt.Topology.DueQueue(), "target", r.opt.Target, "concurrency", r.opt.Concurrency, "prefetch", r.opt.Prefetch)

	s := &session{r: r, ctx: ctx, pub: pub, ack: newAcker(cons), jobs: make(chan job, r.opt.Prefetch),
		stop: make(chan struct{}), timer: map[*time.Timer]job{}}
	var workers sync.WaitGroup
	for range r.opt.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			var wc *wconn
			defer func() { wc.close() }()
			for j := range s.jobs {
				s.handle(&wc, j)
			}
		}()
	}

	var sessErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case e := <-closed:
			if e != nil {
				sessErr = e
			} else {
				sessErr = errors.New("connection closed")
			}
			break loop
		case d, ok := <-deliveries:
			if !ok {
				sessErr = errors.New("consumer cancelled by the broker")
				break loop
			}
			s.dispatch(d)
		}
	}

	// Stop taking new messages; return waiting ones to the queue; let the
	// workers finish what they have within the drain deadline.
	_ = cons.Cancel(tag, false)
	s.release()
	close(s.jobs)
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.opt.Drain):
		r.opt.Log.Error("drain deadline passed; unacked messages return to the queue", "in_flight", r.Metrics.InFlight.Load())
	}
	s.ack.close()
	return sessErr
}

// handle routes one delivery: hop to a tier if not yet due, else deliver.
// It acks only after the message's fate is settled.
func (s *session) handle(wc **wconn, j job) {
	r := s.r
	defer r.Metrics.InFlight.Add(-1)
	d, m, err := j.d, j.m, j.err
	// The logger is built only on the paths that log: slog's With costs
	// more than the rest of a delivery.
	log := func() *slog.Logger {
		return r.opt.Log.With("message_id", d.MessageId, "order_id", m.Subject, "type", m.Type)
	}
	if err != nil {
		s.settle(d, m, "malformed message: "+err.Error(), log)
		return
	}
	remaining := m.DueAt.Sub(r.opt.Now())
	if remaining >= broker.TierBase {
		s.republish(d, m, &r.Metrics.Hops, log)
		return
	}
	if remaining > 0 {
		// It waited in the work queue and is now within the last moments:
		// never deliver early.
		time.Sleep(remaining)
	}
	if m.Attempt == 0 {
		r.Metrics.ObserveLateness(r.opt.Now().Sub(m.DueAt))
	}
	// The delivery continues the trace the message carries (from the
	// create), and hands it on in the CloudEvent.
	ctx, span := telemetry.Tracer().Start(telemetry.Extract(s.ctx, m.Trace), "relay.deliver "+m.Type, trace.WithSpanKind(trace.SpanKindProducer))
	out := m // the event carries the delivery span; the message keeps the create's trace for its retries
	out.Trace = telemetry.Inject(ctx)
	status, detail, err := r.poster.post(ctx, wc, out)
	span.End()
	if errors.Is(err, errHeader) {
		s.settle(d, m, "malformed message: "+err.Error(), log)
		return
	}
	switch {
	case err == nil && status/100 == 2:
		r.Metrics.Delivered.Add(1)
		s.ack.ack(d.DeliveryTag)
		return
	case err == nil && status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		s.settle(d, m, fmt.Sprintf("target answered %d: %s", status, detail), log)
		return
	}
	reason := fmt.Sprintf("target answered %d: %s", status, detail)
	if err != nil {
		reason = "delivery failed: " + err.Error()
	}
	m.Attempt++
	if m.Attempt >= r.opt.MaxAttempts {
		s.settle(d, m, fmt.Sprintf("gave up after %d attempts; last: %s", m.Attempt, reason), log)
		return
	}
	wait := r.backoff(m.Attempt)
	if r.opt.Log.Enabled(s.ctx, slog.LevelInfo) {
		log().Info("delivery will be retried", "attempt", m.Attempt, "in", wait.String(), "reason", reason)
	}
	if wait <= r.opt.HoldRetry && r.Metrics.Held.Load() < int64(r.opt.Prefetch/2) {
		// A short wait: keep it unacked in memory and try again, sparing
		// the broker a round trip.
		r.Metrics.Retried.Add(1)
		r.Metrics.InFlight.Add(1) // handed over to hold
		s.hold(job{d: d, m: m}, wait)
		return
	}
	m.DueAt = r.opt.Now().Add(wait)
	s.republish(d, m, &r.Metrics.Retried, log)
}

// republish puts m back on the ladder and acks d once the broker confirmed
// the copy (or requeues d if it did not). The worker does not wait for the
// confirm: it goes on to the next message while a goroutine does.
func (s *session) republish(d amqp.Delivery, m broker.Message, counter *atomic.Int64, log func() *slog.Logger) {
	r := s.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
	wait, err := broker.PublishAsync(ctx, s.pub, r.opt.Topology, m, r.opt.Now())
	if err != nil {
		cancel()
		log().Warn("re-publish failed; message stays in the queue", "error", err.Error())
		s.ack.requeue(d.DeliveryTag)
		return
	}
	r.Metrics.InFlight.Add(1)
	go func() {
		defer cancel()
		defer r.Metrics.InFlight.Add(-1)
		if err := wait(ctx); err != nil {
			log().Warn("re-publish not confirmed; message stays in the queue", "error", err.Error())
			s.ack.requeue(d.DeliveryTag)
			return
		}
		counter.Add(1)
		s.ack.ack(d.DeliveryTag)
	}()
}

// settle dead-letters a message with a reason, then acks it.
func (s *session) settle(d amqp.Delivery, m broker.Message, reason string, log func() *slog.Logger) {
	r := s.r
	if m.ID == "" {
		m.ID = d.MessageId
	}
	if m.Data == nil {
		m.Data = d.Body
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
	defer cancel()
	if err := broker.PublishDead(ctx, s.pub, r.opt.Topology, m, reason, r.opt.Now()); err != nil {
		log().Warn("dead-letter not confirmed; message stays in the queue", "error", err.Error())
		s.ack.requeue(d.DeliveryTag)
		return
	}
	r.Metrics.DeadLettered.Add(1)
	log().Error("message dead-lettered", "reason", reason)
	s.ack.ack(d.DeliveryTag)
}

// backoff is exponential with jitter: a uniform pick in [d/2, d] where d
// doubles from BackoffBase per attempt up to BackoffMax.
func (r *Relay) backoff(attempt int) time.Duration {
	d := r.opt.BackoffBase
	for i := 1; i < attempt && d < r.opt.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.opt.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
