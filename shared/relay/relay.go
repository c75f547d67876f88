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
	"slices"
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
	// ImmediateRetries: how many retries of a delivery wait only a short
	// pause (25–50 ms) before the backoff starts (default 1; negative:
	// none; never after a 429). An isolated failure (a cold start, a reset
	// connection, an aborted transaction) has usually passed by then, and
	// so soon a retry waits in memory instead of costing the broker a copy.
	ImmediateRetries int
	// HoldRetry: a retry due within this wait goes to the retry queue,
	// where the relay waits it out in memory; a longer one rides the
	// ladder (default 2 s).
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
		o.Prefetch = max(o.Concurrency*8, 5000)
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 20
	}
	if o.ImmediateRetries == 0 {
		o.ImmediateRetries = 1
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
	opt     Options
	poster  *poster
	Metrics *Metrics
}

// New builds a relay; a bad target URL is an error.
func New(opt Options) (*Relay, error) {
	opt.defaults()
	p, err := newPoster(opt.Target, opt.HTTPTimeout, opt.Signer, opt.Token, opt.Concurrency)
	if err != nil {
		return nil, err
	}
	return &Relay{opt: opt, poster: p, Metrics: &Metrics{}}, nil
}

// Run relays until ctx is cancelled, reconnecting after any broker failure.
// On cancellation it stops consuming, lets in-flight deliveries finish
// within the drain deadline, and returns nil.
func (r *Relay) Run(ctx context.Context) error {
	defer r.poster.close()
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
		backoff = min(backoff*2, 2*time.Second) // a broker back from an outage is found within 2 s
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
// a consumer channel per queue (due, retry), the workers, and the messages
// waiting in memory.
type session struct {
	r     *Relay
	pub   *broker.Channel
	due   *consumer
	retry *consumer
	ready chan job // held messages whose wait is over: they go first
	stop  chan struct{}
	// released is closed once release has run: no held message will be
	// added to ready any more, and workers take no new deliveries.
	released chan struct{}
	// failed gets the first reason the session must end: a consumer's
	// deliveries ended (cancelled by the broker, channel or connection
	// closed), or a publish the broker returned unroutable (the topology
	// lost a queue or binding; the next session declares it again).
	failed chan error
	mu     sync.Mutex
	timer  map[*waiting]struct{}
	held   sync.WaitGroup
	// copies are re-published messages waiting for their confirm.
	copies chan *copyWait
}

// consumer is one consuming channel: its queue, its acks, and how long a
// message that is not yet due may wait in memory. Delivery tags, and so
// batched acks, are per channel: retries wait out their backoff on their
// own channel, where they never block the acks of the due queue's
// deliveries.
type consumer struct {
	queue string
	tag   string
	ch    *amqp.Channel
	ack   *acker
	hold  time.Duration

	deliveries <-chan amqp.Delivery
}

// inlineRetry bounds how long a delivery may stay unacked in memory across
// its retries before they move to a copy in the retry queue: below the
// acker's wait, so a retry rarely breaks a run of batched acks.
const inlineRetry = 100 * time.Millisecond

// job is a delivery's tag and its message, read once when it arrives, and
// the consumer it came from. It keeps nothing else of the delivery: jobs
// are copied through channels and wait in memory by the thousand.
type job struct {
	tag   uint64
	m     broker.Message // ID and Data are set even when err is
	err   error          // the message could not be read
	c     *consumer
	since time.Time // when a worker first took it
}

// hold keeps j unacked in memory for wait, then hands it to the workers;
// on shutdown it goes back to its queue. Messages due within HoldMax and
// retries wait here instead of taking another trip through the broker;
// the broker still holds them (unacked), so a crash loses nothing.
func (s *session) hold(j job, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		// Shutting down: back to the queue now, never onto ready after
		// the workers left.
		j.c.ack.requeue(j.tag)
		s.r.Metrics.InFlight.Add(-1)
		return
	default:
	}
	s.r.Metrics.Held.Add(1)
	s.held.Add(1)
	w := &waiting{j: j} // the one copy of the job while it waits
	w.t = time.AfterFunc(wait, func() { s.wake(w) })
	s.timer[w] = struct{}{}
}

// waiting is a held job and its timer.
type waiting struct {
	j job
	t *time.Timer
}

// wake hands a held job whose wait is over to the workers (or, when the
// session is stopping, back to its queue), unless release took it first.
func (s *session) wake(w *waiting) {
	s.mu.Lock()
	_, ok := s.timer[w]
	delete(s.timer, w)
	s.mu.Unlock()
	s.r.Metrics.Held.Add(-1)
	defer s.held.Done()
	if !ok {
		return
	}
	select {
	case s.ready <- w.j:
	case <-s.stop:
		w.j.c.ack.requeue(w.j.tag)
		s.r.Metrics.InFlight.Add(-1)
	}
}

// feeds are one worker's views of the two consumers' deliveries; a worker
// drops a feed once it has seen it end.
type feeds struct {
	due, retry <-chan amqp.Delivery
}

// next returns the next job for a worker: a held message whose wait is
// over before any new delivery, since its tag holds back the batched acks
// of the deliveries after it. Workers take deliveries straight from the
// consumers (reading and holding them too): one goroutine hand-off less
// per message than a dispatcher in between. next reports false once
// release has run and ready is empty; deliveries the worker did not take
// go back to their queue when the connection closes.
func (s *session) next(f *feeds) (job, bool) {
	for {
		select {
		case j := <-s.ready:
			return j, true
		default:
		}
		var d amqp.Delivery
		var ok bool
		var c *consumer
		select {
		case j := <-s.ready:
			return j, true
		case <-s.released:
			select {
			case j := <-s.ready:
				return j, true
			default:
				return job{}, false
			}
		case d, ok = <-f.due:
			c = s.due
			if !ok {
				f.due = nil
			}
		case d, ok = <-f.retry:
			c = s.retry
			if !ok {
				f.retry = nil
			}
		}
		if !ok {
			s.fail(fmt.Errorf("consumer of %s ended (cancelled by the broker, or its channel closed)", c.queue))
			continue
		}
		if j, now := s.dispatch(c, d); now {
			return j, true
		}
	}
}

// DepthInterval is how often the relay reads its queues' depths.
const DepthInterval = 5 * time.Second

// watchDepths reads the depth of the due, retry and dead-letter queues
// every DepthInterval (passive declares on a channel of its own) until end
// is closed, so an alert can see messages waiting while nothing delivers,
// or dead letters piling up. A failed read (the channel closed) opens a
// new channel at the next tick; the depths keep their last value.
func (r *Relay) watchDepths(conn *amqp.Connection, end <-chan struct{}) {
	t := time.NewTicker(DepthInterval)
	defer t.Stop()
	var ch *amqp.Channel
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	topo := r.opt.Topology
	for {
		if ch == nil || ch.IsClosed() {
			ch, _ = conn.Channel()
		}
		for i, q := range []string{topo.DueQueue(), topo.RetryQueue(), topo.DeadQueue()} {
			if ch == nil {
				break
			}
			if info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err == nil {
				r.Metrics.depth[i].Store(int64(info.Messages))
			} else {
				ch = nil // a failed passive declare closes the channel
			}
		}
		select {
		case <-end:
			return
		case <-t.C:
		}
	}
}

// fail ends the session with err, unless it is ending already.
func (s *session) fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

// release returns every waiting message to the queue.
func (s *session) release() {
	close(s.stop) // no more holds: hold checks stop under mu
	s.mu.Lock()
	for w := range s.timer {
		if w.t.Stop() {
			delete(s.timer, w)
			w.j.c.ack.requeue(w.j.tag)
			s.r.Metrics.InFlight.Add(-1)
			s.r.Metrics.Held.Add(-1)
			s.held.Done()
		}
	}
	s.mu.Unlock()
	s.held.Wait()
	close(s.released)
}

// dispatch takes a delivery from c: a job to handle now, or (false) held
// until its time comes.
func (s *session) dispatch(c *consumer, d amqp.Delivery) (job, bool) {
	s.r.Metrics.InFlight.Add(1)
	if d.Redelivered {
		s.r.Metrics.Redelivered.Add(1)
	}
	j := job{tag: d.DeliveryTag, c: c}
	j.m, j.err = broker.FromDelivery(d)
	if j.err == nil {
		if wait := j.m.DueAt.Sub(s.r.opt.Now()); wait > 0 && wait < c.hold {
			s.hold(j, wait)
			return job{}, false
		}
	}
	return j, true
}

func (r *Relay) session(ctx context.Context) error {
	conn, err := broker.Dial(r.opt.AMQPURL, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	raw, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("publish channel: %w", err)
	}
	pub, err := broker.NewChannel(raw)
	if err != nil {
		return err
	}
	if err := r.opt.Topology.CheckServer(conn); err != nil {
		return err
	}
	if err := r.opt.Topology.Declare(raw); err != nil {
		return err
	}
	// Early due messages wait in memory until due (< HoldMax); retries
	// until their backoff ends (<= HoldRetry, plus slack for the trip).
	due, err := r.consume(conn, r.opt.Topology.DueQueue(), "relay", broker.HoldMax)
	if err != nil {
		return err
	}
	retry, err := r.consume(conn, r.opt.Topology.RetryQueue(), "relay-retry", r.opt.HoldRetry+broker.TierBase)
	if err != nil {
		return err
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	r.Metrics.Connected.Store(true)
	r.opt.Log.Info("relay consuming", "queue", r.opt.Topology.DueQueue(), "target", r.opt.Target, "concurrency", r.opt.Concurrency, "prefetch", r.opt.Prefetch)

	s := &session{r: r, pub: pub, due: due, retry: retry, ready: make(chan job, 2*r.opt.Prefetch),
		stop: make(chan struct{}), released: make(chan struct{}), failed: make(chan error, 1), timer: map[*waiting]struct{}{},
		copies: make(chan *copyWait, 2*r.opt.Prefetch+r.opt.Concurrency)}
	// Deliveries, and the copies and dead letters they publish, go on past
	// a shutdown signal for as long as the session drains (deliverCtx),
	// and no longer; confirms are awaited until the session ends
	// (waitCtx).
	drain := context.WithoutCancel(ctx)
	deliverCtx, cancelDeliveries := context.WithCancel(drain)
	defer cancelDeliveries()
	waitCtx, cancelWaits := context.WithCancel(drain)
	copiesEnd := make(chan struct{})
	defer func() { cancelWaits(); close(copiesEnd) }()
	for range copyWaiters {
		go s.confirmCopies(waitCtx, copiesEnd)
	}
	due.ack, retry.ack = newAcker(due.ch, &r.Metrics.AckFrames, r.opt.Log), newAcker(retry.ch, &r.Metrics.AckFrames, r.opt.Log)
	go r.watchDepths(conn, copiesEnd)
	var workers sync.WaitGroup
	for range r.opt.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			f := feeds{due: due.deliveries, retry: retry.deliveries}
			for {
				j, ok := s.next(&f)
				if !ok {
					return
				}
				s.handle(deliverCtx, j)
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
		case err := <-s.failed:
			sessErr = err
			break loop
		}
	}

	// Stop taking new messages; return waiting ones to the queue; let the
	// workers finish what they have within the drain deadline.
	_ = due.ch.Cancel(due.tag, false)
	_ = retry.ch.Cancel(retry.tag, false)
	s.release()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.opt.Drain):
		r.opt.Log.Error("drain deadline passed; unacked messages return to the queue", "in_flight", r.Metrics.InFlight.Load())
		cancelDeliveries() // requests still in flight end now
	}
	due.ack.close()
	retry.ack.close()
	return sessErr
}

// consume opens a channel consuming queue with manual acks and the
// relay's prefetch.
func (r *Relay) consume(conn *amqp.Connection, queue, tag string, hold time.Duration) (*consumer, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("consume channel for %s: %w", queue, err)
	}
	if err := ch.Qos(r.opt.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(queue, tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", queue, err)
	}
	return &consumer{queue: queue, tag: tag, ch: ch, hold: hold, deliveries: deliveries}, nil
}

// log is the logger for one message. It is built only on the paths that
// log: slog's With costs more than the rest of a delivery.
func (s *session) log(m broker.Message) *slog.Logger {
	return s.r.opt.Log.With("message_id", m.ID, "order_id", m.Subject, "type", m.Type)
}

var producer = trace.WithSpanKind(trace.SpanKindProducer)

// handle routes one delivery: hop to a tier if not yet due, else deliver.
// It acks only after the message's fate is settled. ctx bounds the
// delivery; the copies and dead letters it publishes use it without its
// cancel, so a message being settled is settled.
func (s *session) handle(ctx context.Context, j job) {
	r := s.r
	defer r.Metrics.InFlight.Add(-1)
	if j.since.IsZero() {
		j.since = time.Now()
	}
	m, err, ack := j.m, j.err, j.c.ack
	if err != nil {
		s.settle(ctx, j, m, "malformed message: "+err.Error())
		return
	}
	remaining := m.DueAt.Sub(r.opt.Now())
	if remaining >= broker.HoldMax {
		s.republish(ctx, j, m, false, &r.Metrics.Hops)
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
	// create), and hands it on in the CloudEvent: with a span of its own
	// when spans are recorded, else the message's trace context as it is
	// (a span nobody records cost ~4 % of a delivery's CPU).
	postCtx, out := ctx, m // the message keeps the create's trace for its retries
	var span trace.Span
	if telemetry.Recording() {
		postCtx, span = telemetry.Tracer().Start(telemetry.Extract(ctx, m.Trace), "relay.deliver "+m.Type, producer)
		out.Trace = telemetry.Inject(postCtx)
	}
	status, detail, err := r.poster.post(postCtx, out)
	if span != nil {
		span.End()
	}
	if errors.Is(err, errHeader) {
		s.settle(ctx, j, m, "malformed message: "+err.Error())
		return
	}
	verdict := judge(status, err)
	switch verdict {
	case delivered:
		r.Metrics.Delivered.Add(1)
		ack.ack(j.tag)
		return
	case badMessage:
		s.settle(ctx, j, m, fmt.Sprintf("target answered %d: %s", status, detail))
		return
	}
	reason := fmt.Sprintf("target answered %d: %s", status, detail)
	if err != nil {
		reason = "delivery failed: " + err.Error()
	}
	m.Attempt++
	if m.Attempt >= r.opt.MaxAttempts {
		s.settle(ctx, j, m, fmt.Sprintf("gave up after %d attempts; last: %s", m.Attempt, reason))
		return
	}
	wait := r.retryWait(m.Attempt, verdict != transient)
	switch {
	case verdict == refused:
		// The target's configuration or ours (credentials, IAM, URL), not
		// the message: loud, counted for an alert, and retried like any
		// failure until it is fixed or the attempts run out.
		r.Metrics.Refused(status)
		s.log(m).Error("target refused the delivery: check the relay's credential and target URL; retrying",
			"status", status, "attempt", m.Attempt, "in", wait.String(), "reason", reason)
	case r.opt.Log.Enabled(ctx, slog.LevelInfo):
		s.log(m).Info("delivery will be retried", "attempt", m.Attempt, "in", wait.String(), "reason", reason)
	}
	m.DueAt = r.opt.Now().Add(wait)
	if time.Since(j.since)+wait <= inlineRetry {
		// Held unacked only briefly in all: try again from memory. Its
		// tag stays open meanwhile, which holds back the batched acks of
		// the deliveries after it, so this is only for short waits.
		r.Metrics.Retried.Add(1)
		r.Metrics.InFlight.Add(1) // handed over to hold
		j.m = m
		s.hold(j, wait)
		return
	}
	// A longer wait: a copy carrying the attempt count goes to the retry
	// queue, whose consumer waits it out in memory, or, beyond HoldRetry,
	// rides the ladder; this delivery is acked once the copy is confirmed.
	s.republish(ctx, j, m, wait <= r.opt.HoldRetry, &r.Metrics.Retried, &r.Metrics.RetryCopies)
}

// republish puts m back on the ladder, or on the retry queue, and acks j
// once the broker confirmed the copy (or requeues j if it did not). The
// worker does not wait for the confirm: it goes on to the next message,
// and the session's confirmCopies waits for it.
func (s *session) republish(ctx context.Context, j job, m broker.Message, retry bool, counters ...*atomic.Int64) {
	r := s.r
	ctx = context.WithoutCancel(ctx)
	var wait func(context.Context) error
	var err error
	if retry {
		wait, err = broker.PublishRetryAsync(ctx, s.pub, r.opt.Topology, m)
	} else {
		wait, err = broker.PublishAsync(ctx, s.pub, r.opt.Topology, m, r.opt.Now())
	}
	if err != nil {
		s.unpublished(j, m, "re-publish", err)
		return
	}
	r.Metrics.InFlight.Add(1)
	s.copies <- &copyWait{wait: wait, j: j, m: m, counters: counters}
}

// copyWait is a copy (a hop or a retry) waiting for the broker's confirm
// before its original is acked. The session's channel of them holds
// pointers: its buffer (twice the prefetch) is allocated whole, and values
// would make it megabytes.
type copyWait struct {
	wait     func(context.Context) error
	j        job
	m        broker.Message
	counters []*atomic.Int64
}

// copyWaiters goroutines wait for the copies' confirms: a goroutine per
// copy costs a stack each, thousands of them in a burst of hops; one for
// all would wait for a slow tier queue's confirm while faster ones'
// originals stay unacked.
const copyWaiters = 16

// confirmCopies waits for each copy's confirm and then acks its original,
// until end is closed; originals still waiting then go back to their queue
// with their channel.
func (s *session) confirmCopies(ctx context.Context, end <-chan struct{}) {
	for {
		select {
		case c := <-s.copies:
			s.confirmed(ctx, c)
		case <-end:
			for {
				select {
				case <-s.copies:
					s.r.Metrics.InFlight.Add(-1)
				default:
					return
				}
			}
		}
	}
}

// confirmed waits (up to 30 s) for one copy's confirm and settles its
// original.
func (s *session) confirmed(ctx context.Context, c *copyWait) {
	defer s.r.Metrics.InFlight.Add(-1)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.wait(ctx); err != nil {
		s.unpublished(c.j, c.m, "re-publish", err)
		return
	}
	for _, n := range c.counters {
		n.Add(1)
	}
	c.j.c.ack.ack(c.j.tag)
}

// settle dead-letters a message with a reason, then acks it.
func (s *session) settle(ctx context.Context, j job, m broker.Message, reason string) {
	r := s.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := broker.PublishDead(ctx, s.pub, r.opt.Topology, m, reason); err != nil {
		s.unpublished(j, m, "dead-letter", err)
		return
	}
	r.Metrics.DeadLettered.Add(1)
	s.log(m).Error("message dead-lettered", "reason", reason)
	j.c.ack.ack(j.tag)
}

// unpublished returns j to its queue after its copy (what) was not
// confirmed. A copy the broker returned unroutable means the topology lost
// a queue or binding: the session ends, and the next one declares it again.
// A nacked copy ends the session too: after a node loss RabbitMQ 3.10 kept
// nacking a channel's publishes to quorum queues whose leader had moved,
// while a new channel's were confirmed (broker.Publisher does the same), so
// the same channel would only requeue the message again and again.
func (s *session) unpublished(j job, m broker.Message, what string, err error) {
	s.log(m).Warn(what+" not confirmed; message stays in the queue", "error", err.Error())
	j.c.ack.requeue(j.tag)
	switch {
	case errors.Is(err, broker.ErrReturned):
		s.fail(fmt.Errorf("topology incomplete: %w", err))
	case errors.Is(err, broker.ErrNacked):
		s.fail(fmt.Errorf("copies nacked; opening new channels: %w", err))
	}
}

// verdict is what a target's answer means for the message.
type verdict int

const (
	delivered  verdict = iota // 2xx: done
	badMessage                // 400, 422: the message itself is bad; dead-letter it
	refused                   // 401, 403, 404, 405, 415: configuration; retry with backoff, loudly
	throttled                 // 429: slow down; retry with backoff
	transient                 // anything else (5xx, 408, other 4xx, no answer): retry
)

// judge classifies a delivery's outcome. Only an answer that says the
// message is bad dead-letters it at once: an answer about who calls or
// where (a credential still propagating, a rotated secret, a wrong
// audience or URL) would otherwise dead-letter every timer until fixed.
func judge(status int, err error) verdict {
	switch {
	case err != nil:
		return transient
	case status/100 == 2:
		return delivered
	case status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		return badMessage
	case status == http.StatusTooManyRequests:
		return throttled
	case refusal(status):
		return refused
	}
	return transient
}

// refusalStatuses are the answers that say the relay's configuration, not
// the message, is wrong; relay_target_refusals_total counts each.
var refusalStatuses = [...]int{
	http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
	http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType,
}

func refusal(status int) bool { return slices.Contains(refusalStatuses[:], status) }

// immediatePause is the longest wait of an immediate retry.
const immediatePause = 50 * time.Millisecond

// retryWait is how long the attempt-th retry waits: the first
// ImmediateRetries a short pause, then exponential backoff with jitter,
// where d doubles from BackoffBase per retry up to BackoffMax. A target
// that said 429 (slow down) or refused the caller gets no immediate retry:
// neither passes in 50 ms.
func (r *Relay) retryWait(attempt int, noImmediate bool) time.Duration {
	immediate := max(r.opt.ImmediateRetries, 0)
	if attempt <= immediate && !noImmediate {
		return jitter(immediatePause)
	}
	d := r.opt.BackoffBase
	for i := immediate + 1; i < attempt && d < r.opt.BackoffMax; i++ {
		d *= 2
	}
	return jitter(min(d, r.opt.BackoffMax))
}

// jitter picks uniformly in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
