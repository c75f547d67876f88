package relay_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/relay"
)

// skipWithoutPlugin skips tb on a broker without the
// rabbitmq_delayed_message_exchange plugin (a stock RabbitMQ has none): the
// broker answers the declare of an x-delayed-message exchange with 503
// COMMAND_INVALID (3.x) or 406 PRECONDITION_FAILED "unknown exchange type" (4.x).
// Any other failure fails the test.
func skipWithoutPlugin(tb testing.TB, url string) {
	tb.Helper()
	probe := testenv.UniqueName("ot-plugin-probe")
	err := testenv.OnAMQPChannel(url, func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(probe, "x-delayed-message", false, true, false, false, amqp.Table{"x-delayed-type": "fanout"}); err != nil {
			return err
		}
		return ch.ExchangeDelete(probe, false, false)
	})
	var ae *amqp.Error
	if errors.As(err, &ae) && (ae.Code == amqp.CommandInvalid ||
		ae.Code == amqp.PreconditionFailed && strings.Contains(ae.Reason, "unknown exchange type")) {
		tb.Skipf("the broker has no x-delayed-message exchange type (rabbitmq_delayed_message_exchange is not enabled): %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// newPluginEnv is newEnv in plugin mode; it skips without the plugin.
func newPluginEnv(t *testing.T) *env {
	url := testenv.AMQPURL(t)
	skipWithoutPlugin(t, url)
	return newEnvFor(t, url, broker.Topology{Prefix: testenv.UniqueName("ot-plugin"), Mode: broker.ModePlugin})
}

// Plugin mode end to end: timers published through the x-delayed-message
// exchange come due on time, a 1-hour timer published first holds back
// neither the 2 s nor the 6 s ones, a message the plugin releases early is
// delayed again instead of delivered early, timers pending in the plugin
// survive a relay restart (the relay is down from ~2 s to 5 s), and a retry
// with a backoff beyond HoldRetry waits in the plugin too.
func TestPluginMode(t *testing.T) {
	t.Parallel()
	e := newPluginEnv(t)
	s := newSink(t)
	now := time.Now()
	e.publish(1, now.Add(time.Hour), "long")
	due2, due6 := now.Add(2*time.Second), now.Add(6*time.Second)
	e.publish(1, due2, "two")
	e.publish(1, due6, "six")

	// A message whose x-delay (300 ms) is far shorter than its due time
	// (7 s away), what a clock step could leave: the relay must send it
	// back to the plugin, where it waits out the relay's restart.
	dueEarly := now.Add(7 * time.Second)
	err := testenv.OnAMQPChannel(e.url, func(ch *amqp.Channel) error {
		p := events.Timeout("early", dueEarly, now, "").Publishing()
		p.Headers["x-delay"] = int64(300)
		return ch.PublishWithContext(context.Background(), e.topo.PluginExchange(), "", false, false, p)
	})
	if err != nil {
		t.Fatal(err)
	}

	r1, stop := e.run(relay.Options{Concurrency: 4}, s.srv.URL)
	waitFor(t, 10*time.Second, "the 2 s timer", func() bool { return s.distinct() >= 1 })
	stop() // the 6 s and 1 h timers wait in the plugin, not in the relay
	time.Sleep(time.Until(due6) - time.Second)
	if got := r1.Metrics.Hops.Load(); got != 1 {
		t.Errorf("first relay sent %d messages back to the plugin, want 1 (the early one)", got)
	}
	// The 6 s timer's first try is refused with a 503: its retry, 1-2 s
	// later, beyond HoldRetry, also waits in the plugin.
	var refused atomic.Bool
	s.answer.Store(func(id string) int {
		if strings.HasPrefix(id, "timeout-six-0-") && refused.CompareAndSwap(false, true) {
			return 503
		}
		return 200
	})
	r, _ := e.run(relay.Options{Concurrency: 4, ImmediateRetries: -1, BackoffBase: 2 * time.Second, BackoffMax: 2 * time.Second, HoldRetry: time.Millisecond}, s.srv.URL)
	waitFor(t, 10*time.Second, "the 6 s and early timers", func() bool { return s.distinct() == 3 })
	time.Sleep(500 * time.Millisecond)

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range []struct {
		prefix string
		from   time.Time     // the earliest it may arrive
		within time.Duration // and how long after that at the latest
	}{
		{"timeout-two-0-", due2, time.Second},
		{"timeout-six-0-", due6.Add(time.Second), 2 * time.Second}, // its retry waits 1-2 s
		{"timeout-early-", dueEarly, time.Second},
	} {
		var at time.Time
		for id, first := range s.firstT {
			if strings.HasPrefix(id, w.prefix) {
				at = first
			}
		}
		if at.IsZero() {
			t.Errorf("%s… not delivered; got %v", w.prefix, s.seen)
		} else if late := at.Sub(w.from); late < 0 || late > w.within {
			t.Errorf("%s… delivered %v after %v, want within [0, %v]", w.prefix, late, w.from.Format(time.StampMilli), w.within)
		}
	}
	if got, copies := r.Metrics.Retried.Load(), r.Metrics.RetryCopies.Load(); got != 1 || copies != 1 {
		t.Errorf("second relay: %d retries, %d copies; want 1 retry, by a copy (to the plugin: its wait is beyond HoldRetry)", got, copies)
	}
	if len(s.seen) != 3 {
		t.Errorf("delivered %d distinct messages, want 3 (the 1 h timer must wait): %v", len(s.seen), s.seen)
	}
	if r.Metrics.DeadLettered.Load() != 0 {
		t.Errorf("%d dead-lettered", r.Metrics.DeadLettered.Load())
	}
}
