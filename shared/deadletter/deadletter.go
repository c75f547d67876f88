// Package deadletter lets an operator look at what the relay dead-lettered
// and put it back: shared/cmd/otctl's "dead" commands.
//
// Browsing takes the dead letters off the queue unsettled, on a channel of
// its own; closing that channel returns every one not redriven to the
// queue. A redrive publishes a fresh copy onto the ladder (attempts reset,
// due now or at its original due time if that is later) and acks the dead
// letter only once the broker confirmed the copy: a redrive killed at any
// point loses nothing and at most duplicates a timer, which HandleTimeout
// absorbs (every step of a decision is idempotent).
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/shared/broker"
)

// Letter is one dead letter.
type Letter struct {
	Message broker.Message
	// Err says why the message could not be read (it cannot be redriven).
	Err error
	tag uint64
}

// Age is how long ago it was dead-lettered (zero if unknown).
func (l Letter) Age(now time.Time) time.Duration {
	if l.Message.DeadAt.IsZero() {
		return 0
	}
	return now.Sub(l.Message.DeadAt).Truncate(time.Second)
}

// Session browses one topology's dead-letter queue.
type Session struct {
	topo    broker.Topology
	conn    *amqp.Connection
	browse  *amqp.Channel
	pub     *broker.Channel
	letters []Letter
}

// Open connects to the broker at url and takes up to limit dead letters of
// topo off its dead-letter queue, unsettled, newest first.
func Open(url string, topo broker.Topology, limit int) (*Session, error) {
	conn, err := broker.Dial(url, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to the broker: %w", err)
	}
	s := &Session{topo: topo, conn: conn}
	if s.browse, err = conn.Channel(); err != nil {
		conn.Close()
		return nil, err
	}
	for len(s.letters) < limit {
		d, ok, err := s.browse.Get(topo.DeadQueue(), false)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("read %s: %w", topo.DeadQueue(), err)
		}
		if !ok {
			break
		}
		m, err := broker.FromDelivery(d)
		s.letters = append(s.letters, Letter{Message: m, Err: err, tag: d.DeliveryTag})
	}
	sort.SliceStable(s.letters, func(i, j int) bool { return s.letters[i].Message.DeadAt.After(s.letters[j].Message.DeadAt) })
	return s, nil
}

// Letters are the dead letters taken, newest first.
func (s *Session) Letters() []Letter { return s.letters }

// Close returns every dead letter not redriven to the queue.
func (s *Session) Close() error { return s.conn.Close() }

// Filter selects dead letters; the zero Filter selects none.
type Filter struct {
	All       bool
	IDs       []string  // message ids or order ids
	Reason    string    // a substring of the reason
	OlderThan time.Time // dead-lettered before
	NewerThan time.Time // dead-lettered after
}

// Empty reports whether f selects nothing.
func (f Filter) Empty() bool {
	return !f.All && len(f.IDs) == 0 && f.Reason == "" && f.OlderThan.IsZero() && f.NewerThan.IsZero()
}

// Match reports whether f selects l: all given criteria must hold.
func (f Filter) Match(l Letter) bool {
	if f.Empty() {
		return false
	}
	m := l.Message
	if len(f.IDs) > 0 {
		hit := false
		for _, id := range f.IDs {
			hit = hit || id == m.ID || id == m.Subject
		}
		if !hit {
			return false
		}
	}
	if f.Reason != "" && !strings.Contains(m.Reason, f.Reason) {
		return false
	}
	if !f.OlderThan.IsZero() && !m.DeadAt.Before(f.OlderThan) {
		return false
	}
	if !f.NewerThan.IsZero() && !m.DeadAt.After(f.NewerThan) {
		return false
	}
	return true
}

// Outcome is what a redrive did with one letter.
type Outcome struct {
	Letter Letter
	DueAt  time.Time // when the copy comes due
	Err    error     // why it was not redriven (it stays dead)
}

// ErrUnreadable: a dead letter the relay could not read cannot be redriven.
var ErrUnreadable = errors.New("unreadable message: cannot be redriven")

// Redrive puts every letter f selects back on the ladder, due at the later
// of now and its original due time, with its attempts reset and no reason;
// each dead letter is acked only after its copy was confirmed. With dryRun
// nothing is published or acked. It stops at the first broker failure:
// what was confirmed stays redriven, the rest stays dead.
func (s *Session) Redrive(ctx context.Context, f Filter, dryRun bool, now time.Time) ([]Outcome, error) {
	if !dryRun && s.pub == nil {
		raw, err := s.conn.Channel()
		if err != nil {
			return nil, err
		}
		if s.pub, err = broker.NewChannel(raw); err != nil {
			return nil, err
		}
		if err := s.topo.Declare(raw); err != nil {
			return nil, fmt.Errorf("declare the topology: %w", err)
		}
	}
	var out []Outcome
	for _, l := range s.letters {
		if !f.Match(l) {
			continue
		}
		o := Outcome{Letter: l}
		if l.Err != nil {
			o.Err = fmt.Errorf("%w (%v)", ErrUnreadable, l.Err)
			out = append(out, o)
			continue
		}
		m := l.Message
		m.Attempt, m.Reason, m.DeadAt = 0, "", time.Time{}
		m.DueAt = m.DueAt.UTC()
		if m.DueAt.Before(now) {
			m.DueAt = now.UTC()
		}
		o.DueAt = m.DueAt
		if !dryRun {
			if err := broker.PublishOn(ctx, s.pub, s.topo, m, now); err != nil {
				return out, fmt.Errorf("redrive %s: %w", m.ID, err)
			}
			if err := s.browse.Ack(l.tag, false); err != nil {
				// The copy is on the ladder; the dead letter comes back
				// with the channel: redriving it again duplicates a timer,
				// which the functions absorb.
				return out, fmt.Errorf("ack dead letter %s after its redrive: %w", m.ID, err)
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// CountByReason counts letters by reason, the part before the first ':'
// ("target answered 503", "gave up after 20 attempts; last", ...).
func CountByReason(ls []Letter) map[string]int {
	out := map[string]int{}
	for _, l := range ls {
		r := l.Message.Reason
		if l.Err != nil {
			r = "unreadable"
		}
		if i := strings.Index(r, ":"); i > 0 {
			r = r[:i]
		}
		out[r]++
	}
	return out
}
