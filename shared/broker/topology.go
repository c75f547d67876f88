// Package broker is the RabbitMQ adapter for durable delayed messages.
//
// Default ("ladder") mode needs no plugin: a ladder of quorum queues whose
// queue-level TTLs are 250 ms × 2^k (k = 4..27: 4 s to about 388 days)
// dead-letter, at least once, into one "due" queue. A message carries its
// absolute due time in its x-ot header; the relay takes it from the due
// queue and, while it is not yet due, publishes it to the longest tier that
// leaves it an eighth of the tier's TTL to spare; the last 4.5 s it waits
// in the relay's memory. Each queue holds one TTL, so short delays never
// wait behind long ones, and the due time, not the ladder, sets the
// precision.
//
// Optional "plugin" mode publishes to an x-delayed-message exchange with an
// x-delay header; the relay re-delays anything that arrives early (the
// plugin's own limit is about 49 days per hop).
//
// "native" mode (RabbitMQ 4.4 and later) publishes straight to the due
// queue, a quorum queue, with the message's due time in the
// x-opt-delivery-time header: the queue keeps the message back until then.
// No tiers, no hops; the relay consumes the due queue as in the others.
package broker

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Modes.
const (
	ModeLadder = "ladder"
	ModePlugin = "plugin"
	ModeNative = "native"
)

// NativeHeader carries a native-mode message's delivery time: int64
// milliseconds since the Unix epoch (other types are delivered at once).
const NativeHeader = "x-opt-delivery-time"

// MaxNativeDelay bounds how far ahead one native delivery time is set: a
// later due time is parked this long and parked again by the relay when it
// arrives early. The bound keeps a wrong clock or unit from reaching the
// queue (a far-future value crashed a 4.4 development build's queue for
// good, docs/operating.md); every payment deadline is far within it.
const MaxNativeDelay = 30 * 24 * time.Hour

// TierBase is the ladder's unit: tier k waits TierBase << k (the tiers in
// use start at firstTier).
const TierBase = 250 * time.Millisecond

// HoldMax: a message due within this goes to the due queue, and the relay
// waits the rest in memory (unacked, bounded by its prefetch) instead of
// sending it through the short tiers: every hop costs the broker a
// dead-lettering, one message at a time per queue, and re-enters the due
// queue behind messages due later, which made bursts late (docs/design.md,
// "Why the relay holds the last 4.5 s"). It is the shortest tier plus its
// slack (4 s + 0.5 s): anything due later fits a tier.
const HoldMax = 4500 * time.Millisecond

// firstTier is the shortest tier in use (4 s).
const firstTier = 4

// TierCount tiers reach 250 ms × 2^27 ≈ 388 days per hop.
const TierCount = 28

// Topology names the exchanges and queues; all derive from a prefix.
type Topology struct {
	Prefix string
	Mode   string
	// Tiers is how many ladder tiers exist (default TierCount). A delay
	// longer than the longest tier hops on that tier repeatedly, so fewer
	// tiers only cost hops; tests use fewer, since every tier is a quorum
	// queue (a Raft group) to create and delete.
	Tiers int
	// DeliveryLimit overrides the consumed queues' delivery limit
	// (default DeliveryLimit; tests use a small one).
	DeliveryLimit int
}

func (t Topology) tiers() int {
	if t.Tiers <= 0 || t.Tiers > TierCount {
		return TierCount
	}
	return t.Tiers
}

// DelayExchange routes published messages to a tier by routing key.
func (t Topology) DelayExchange() string { return t.Prefix + ".delay" }

// HopExchange receives expired tier messages (their dead-letter exchange)
// and messages already due.
func (t Topology) HopExchange() string { return t.Prefix + ".hop" }

// DueQueue is what the relay consumes.
func (t Topology) DueQueue() string { return t.Prefix + ".due" }

// RetryQueue holds messages whose delivery failed and will be tried again
// within a short wait. The relay consumes it on a channel of its own and
// waits out each message's backoff in memory, so a failing message never
// holds up the acknowledgements of the messages around it in DueQueue.
func (t Topology) RetryQueue() string { return t.Prefix + ".retry" }

// DeadQueue keeps messages the receiver refused or that ran out of attempts.
func (t Topology) DeadQueue() string { return t.Prefix + ".dead" }

// PluginExchange is the x-delayed-message exchange of plugin mode.
func (t Topology) PluginExchange() string { return t.Prefix + ".delayed" }

// TierQueue names tier k.
func (t Topology) TierQueue(k int) string { return fmt.Sprintf("%s.delay.t%02d", t.Prefix, k) }

// TierTTL is tier k's TTL.
func TierTTL(k int) time.Duration { return TierBase << k }

func quorum(extra amqp.Table) amqp.Table {
	args := amqp.Table{"x-queue-type": "quorum"}
	for k, v := range extra {
		args[k] = v
	}
	return args
}

// Delivery limits, set explicitly on every queue: RabbitMQ 4 gives quorum
// queues a default of 20, after which a message is dropped (or
// dead-lettered). A delivery is counted only when a message goes back to
// its queue unacked — its relay's connection closed while it was in flight
// or held, or the relay rejected it back (a copy was not confirmed, or a
// shutdown returned what it held) — never for a retry (those wait in
// memory, unacked, or become new copies). The relay gives messages back
// with basic.reject, which RabbitMQ 3.x and 4.x all count; 4.3 stopped
// counting basic.nack(requeue). DeliveryLimit such returns of the
// same message mean a relay in a crash loop; the message then goes to the
// dead-letter queue (at least once), never away, and otctl redrives it.
// The dead-letter queue itself is only read by otctl, whose list returns
// what it read: DeadDeliveryLimit lists of the same dead letter.
const (
	DeliveryLimit     = 1000
	DeadDeliveryLimit = 1_000_000
)

// Declare creates the topology idempotently. Declaring twice with the same
// settings is a no-op; a queue that exists with other arguments (an older
// version's) is an error from the broker, reported with its name.
func (t Topology) Declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(t.HopExchange(), amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", t.HopExchange(), err)
	}
	consumed := quorum(amqp.Table{
		"x-delivery-limit":          int64(t.deliveryLimit()),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": t.DeadQueue(),
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish",
	})
	for q, args := range map[string]amqp.Table{
		t.DueQueue():   consumed,
		t.RetryQueue(): consumed,
		t.DeadQueue():  quorum(amqp.Table{"x-delivery-limit": int64(DeadDeliveryLimit)}),
	} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			return declareErr(q, err)
		}
	}
	if err := ch.QueueBind(t.DueQueue(), "", t.HopExchange(), false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", t.DueQueue(), err)
	}
	switch t.Mode {
	case ModeNative:
		return nil // the due queue parks messages itself
	case ModePlugin:
		if err := ch.ExchangeDeclare(t.PluginExchange(), "x-delayed-message", true, false, false, false, amqp.Table{"x-delayed-type": "fanout"}); err != nil {
			return fmt.Errorf("declare x-delayed-message exchange %s (is rabbitmq_delayed_message_exchange enabled?): %w", t.PluginExchange(), err)
		}
		if err := ch.QueueBind(t.DueQueue(), "", t.PluginExchange(), false, nil); err != nil {
			return fmt.Errorf("bind %s: %w", t.DueQueue(), err)
		}
		return nil
	}
	if err := ch.ExchangeDeclare(t.DelayExchange(), amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", t.DelayExchange(), err)
	}
	for k := firstTier; k < t.tiers(); k++ {
		q := t.TierQueue(k)
		_, err := ch.QueueDeclare(q, true, false, false, false, quorum(amqp.Table{
			"x-message-ttl":          int64(TierTTL(k) / time.Millisecond),
			"x-dead-letter-exchange": t.HopExchange(),
			"x-dead-letter-strategy": "at-least-once",
			"x-overflow":             "reject-publish",
			"x-delivery-limit":       int64(t.deliveryLimit()), // nothing consumes a tier; explicit all the same
		}))
		if err != nil {
			return declareErr(q, err)
		}
		if err := ch.QueueBind(q, q, t.DelayExchange(), false, nil); err != nil {
			return fmt.Errorf("bind %s: %w", q, err)
		}
	}
	return nil
}

func (t Topology) deliveryLimit() int {
	if t.DeliveryLimit > 0 {
		return t.DeliveryLimit
	}
	return DeliveryLimit
}

// declareErr explains a failed queue declare; an existing queue with other
// arguments (406 PRECONDITION_FAILED) needs an operator.
func declareErr(q string, err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
		return fmt.Errorf("declare queue %s: it exists with other arguments (an older version's?); move its messages and delete it, or declare the topology under another BROKER_PREFIX: %w", q, err)
	}
	return fmt.Errorf("declare queue %s: %w", q, err)
}

// Route says where a message due after remaining goes next: the hop
// exchange (no key) for the due queue when it is due within HoldMax (the
// relay waits the rest in memory), else a tier queue's routing key on the
// delay exchange — the longest tier that leaves the message its slack.
func (t Topology) Route(remaining time.Duration) (exchange, key string) {
	if t.Mode == ModePlugin {
		if remaining <= 0 {
			return t.HopExchange(), ""
		}
		return t.PluginExchange(), ""
	}
	if t.Mode == ModeNative {
		return t.HopExchange(), ""
	}
	k, ok := t.Tier(remaining)
	if !ok {
		return t.HopExchange(), ""
	}
	return t.DelayExchange(), t.TierQueue(k)
}

// Tier is the ladder tier a message due after remaining goes to next, or
// ok=false when it is due within HoldMax (the due queue; the relay waits
// the rest in memory).
func (t Topology) Tier(remaining time.Duration) (k int, ok bool) {
	if remaining < HoldMax {
		return 0, false
	}
	k = firstTier
	for k+1 < t.tiers() && TierTTL(k+1)+tierSlack(TierTTL(k+1)) <= remaining {
		k++
	}
	return k, true
}

// tierSlack is how long before its due time a message must come out of a
// tier of the given TTL: an eighth of the TTL. A tier dead-letters its
// expired messages one at a time, so timers published together leave it
// in a queue; the slack absorbs that wait in proportion to how many a tier
// can gather, for about half a hop more per timer on average
// (docs/design.md has the run that showed it).
func tierSlack(ttl time.Duration) time.Duration { return ttl / 8 }

// MaxPluginDelay is the longest x-delay the plugin accepts in one hop.
const MaxPluginDelay = time.Duration(1<<32-1) * time.Millisecond

// Delete removes every queue and exchange of the topology (tests, teardown).
func (t Topology) Delete(ch *amqp.Channel) error {
	var errs []error
	queues := []string{t.DueQueue(), t.RetryQueue(), t.DeadQueue()}
	exchanges := []string{t.HopExchange(), t.PluginExchange()}
	if t.Mode != ModePlugin {
		exchanges[1] = t.DelayExchange()
		for k := range TierCount { // all: another program may have declared more
			queues = append(queues, t.TierQueue(k))
		}
	}
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ex := range exchanges {
		if err := ch.ExchangeDelete(ex, false, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
