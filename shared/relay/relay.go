// Package relay moves due messages from RabbitMQ to the HandleTimeout
// function as CloudEvents (binary HTTP mode). It acks a message only after
// the target answered 2xx, or after the message was re-published (not yet
// due, or to be retried later) or dead-lettered with broker confirms, so a
// crash at any point loses nothing (a message may be delivered twice; the
// CloudEvent id is stable so the receiver can tell).
package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
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
	Signer      auth.Signer
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
	client  *http.Client
	Metrics *Metrics
}

// New builds a relay.
func New(opt Options) *Relay {
	opt.defaults()
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        opt.Concurrency * 2,
		MaxIdleConnsPerHost: opt.Concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &Relay{opt: opt, client: &http.Client{Transport: tr, Timeout: opt.HTTPTimeout}, Metrics: &Metrics{}}
}

// Run relays until ctx is cancelled, reconnecting after any broker failure.
// On cancellation it stops consuming, lets in-flight deliveries finish
// within the drain deadline, and returns nil.
func (r *Relay) Run(ctx context.Context) error {
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

// session is one connection's life.
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

	// Deliveries that are due go to the workers; those due within the
	// shortest tier wait in memory (timers), others hop to a tier.
	jobs := make(chan amqp.Delivery, r.opt.Prefetch)
	var (
		workers sync.WaitGroup
		held    sync.WaitGroup
		stop    = make(chan struct{})
	)
	for range r.opt.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for d := range jobs {
				r.handle(ctx, pub, d)
			}
		}()
	}
	var (
		heldMu     sync.Mutex
		heldTimers = map[*time.Timer]amqp.Delivery{}
	)
	dispatch := func(d amqp.Delivery) {
		r.Metrics.InFlight.Add(1)
		if d.Redelivered {
			r.Metrics.Redelivered.Add(1)
		}
		m, err := broker.FromDelivery(d)
		wait := time.Duration(0)
		if err == nil {
			wait = m.DueAt.Sub(r.opt.Now())
		}
		if wait <= 0 || wait >= broker.TierBase {
			jobs <- d
			return
		}
		r.Metrics.Held.Add(1)
		held.Add(1)
		heldMu.Lock()
		var t *time.Timer
		t = time.AfterFunc(wait, func() {
			heldMu.Lock()
			_, ok := heldTimers[t]
			delete(heldTimers, t)
			heldMu.Unlock()
			r.Metrics.Held.Add(-1)
			defer held.Done()
			if !ok {
				return
			}
			select {
			case jobs <- d:
			case <-stop:
				_ = d.Nack(false, true)
				r.Metrics.InFlight.Add(-1)
			}
		})
		heldTimers[t] = d
		heldMu.Unlock()
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
			dispatch(d)
		}
	}

	// Stop taking new messages; return held ones to the queue; let the
	// workers finish what they have within the drain deadline.
	_ = cons.Cancel(tag, false)
	close(stop)
	heldMu.Lock()
	for t, d := range heldTimers {
		if t.Stop() {
			delete(heldTimers, t)
			_ = d.Nack(false, true)
			r.Metrics.InFlight.Add(-1)
			r.Metrics.Held.Add(-1)
			held.Done()
		}
	}
	heldMu.Unlock()
	held.Wait()
	close(jobs)
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.opt.Drain):
		r.opt.Log.Error("drain deadline passed; unacked messages return to the queue", "in_flight", r.Metrics.InFlight.Load())
	}
	return sessErr
}

// handle routes one delivery: hop to a tier if not yet due, else deliver.
// It acks only after the message's fate is settled.
func (r *Relay) handle(ctx context.Context, pub *amqp.Channel, d amqp.Delivery) {
	defer r.Metrics.InFlight.Add(-1)
	// Publishes and acks must complete even during shutdown.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	log := r.opt.Log.With("message_id", d.MessageId)
	m, err := broker.FromDelivery(d)
	if err != nil {
		r.settle(pctx, pub, d, m, "malformed message: "+err.Error(), log)
		return
	}
	log = log.With("order_id", m.Subject, "type", m.Type)
	now := r.opt.Now()
	if m.DueAt.Sub(now) >= broker.TierBase {
		if err := broker.PublishOn(pctx, pub, r.opt.Topology, m, now); err != nil {
			log.Warn("hop not confirmed; message stays in the queue", "error", err.Error())
			_ = d.Nack(false, true)
			return
		}
		r.Metrics.Hops.Add(1)
		_ = d.Ack(false)
		return
	}
	if m.Attempt == 0 {
		r.Metrics.ObserveLateness(now.Sub(m.DueAt))
	}
	status, detail, err := r.deliver(ctx, m)
	switch {
	case err == nil && status/100 == 2:
		r.Metrics.Delivered.Add(1)
		_ = d.Ack(false)
		return
	case err == nil && status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		r.settle(pctx, pub, d, m, fmt.Sprintf("target answered %d: %s", status, detail), log)
		return
	}
	reason := fmt.Sprintf("target answered %d: %s", status, detail)
	if err != nil {
		reason = "delivery failed: " + err.Error()
	}
	m.Attempt++
	if m.Attempt >= r.opt.MaxAttempts {
		r.settle(pctx, pub, d, m, fmt.Sprintf("gave up after %d attempts; last: %s", m.Attempt, reason), log)
		return
	}
	retryAt := r.opt.Now().Add(r.backoff(m.Attempt))
	m.DueAt = retryAt
	if err := broker.PublishOn(pctx, pub, r.opt.Topology, m, r.opt.Now()); err != nil {
		log.Warn("retry not confirmed; message stays in the queue", "error", err.Error())
		_ = d.Nack(false, true)
		return
	}
	r.Metrics.Retried.Add(1)
	log.Info("delivery will be retried", "attempt", m.Attempt, "retry_at", retryAt, "reason", reason)
	_ = d.Ack(false)
}

// settle dead-letters a message with a reason, then acks it.
func (r *Relay) settle(ctx context.Context, pub *amqp.Channel, d amqp.Delivery, m broker.Message, reason string, log *slog.Logger) {
	if m.ID == "" {
		m.ID = d.MessageId
	}
	if m.Data == nil {
		m.Data = d.Body
	}
	if err := broker.PublishDead(ctx, pub, r.opt.Topology, m, reason, r.opt.Now()); err != nil {
		log.Warn("dead-letter not confirmed; message stays in the queue", "error", err.Error())
		_ = d.Nack(false, true)
		return
	}
	r.Metrics.DeadLettered.Add(1)
	log.Error("message dead-lettered", "reason", reason)
	_ = d.Ack(false)
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

// deliver POSTs m as a binary-mode CloudEvent and returns the status.
func (r *Relay) deliver(ctx context.Context, m broker.Message) (int, string, error) {
	e := cloudevents.NewEvent()
	e.SetID(m.ID)
	e.SetType(m.Type)
	e.SetSource(events.Source)
	e.SetSubject(m.Subject)
	if !m.CreatedAt.IsZero() {
		e.SetTime(m.CreatedAt)
	}
	if m.Trace != "" {
		e.SetExtension("traceparent", m.Trace)
	}
	if r.opt.Token != "" {
		e.SetExtension("internaltoken", r.opt.Token)
	}
	if err := e.SetData(cloudevents.ApplicationJSON, m.Data); err != nil {
		return 0, "", err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opt.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, r.opt.Target, nil)
	if err != nil {
		return 0, "", err
	}
	if err := cehttp.WriteRequest(rctx, binding.ToMessage(&e), req); err != nil {
		return 0, "", err
	}
	if m.Trace != "" {
		req.Header.Set("traceparent", m.Trace)
	}
	if r.opt.Signer != nil {
		if err := r.opt.Signer.Sign(req); err != nil {
			return 0, "", err
		}
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(body)), nil
}
