package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrReturned means the broker confirmed a mandatory publish but sent it
// back first: no queue took it (a queue or binding of the topology is
// missing). It wraps ErrNotConfirmed.
var ErrReturned = fmt.Errorf("%w: returned unroutable", ErrNotConfirmed)

// Channel is a confirm-mode channel on which a publish counts only when the
// broker confirmed it and did not return it. RabbitMQ confirms an
// unroutable mandatory publish too, right after sending it back
// (basic.return, then basic.ack), so a confirm alone would count a message
// that no queue holds — a timer lost if someone deleted a tier queue.
//
// Each mandatory publish carries a channel-unique publish id in its
// correlation-id property; the watcher goroutine sees returns and confirms
// in the order the broker sent them, and notes a return before it passes
// the confirm of the same publish.
type Channel struct {
	ch  *amqp.Channel
	seq atomic.Uint64

	mu       sync.Mutex
	seen     uint64 // highest delivery tag whose confirm the watcher passed
	ended    bool   // the confirm stream closed with the channel
	waiting  map[uint64]chan struct{}
	returned map[string]amqp.Return // by publish id
}

// NewChannel puts ch in confirm mode and starts watching its confirms and
// returns.
func NewChannel(ch *amqp.Channel) (*Channel, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	c := &Channel{ch: ch, waiting: map[uint64]chan struct{}{}, returned: map[string]amqp.Return{}}
	returns := ch.NotifyReturn(make(chan amqp.Return, 64))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1024))
	go c.watch(confirms, returns)
	return c, nil
}

// IsClosed reports whether the channel is closed.
func (c *Channel) IsClosed() bool { return c.ch.IsClosed() }

// watch notes returns and passes confirms. The client library hands both
// over from its one reader goroutine in the broker's order, and a return
// comes before the confirm of the same publish: so when a confirm arrives,
// its publish's return is already in returns.
func (c *Channel) watch(confirms <-chan amqp.Confirmation, returns <-chan amqp.Return) {
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			c.note(r)
		case cf, ok := <-confirms:
			if !ok {
				c.mu.Lock()
				c.ended = true
				for tag, w := range c.waiting {
					close(w)
					delete(c.waiting, tag)
				}
				c.mu.Unlock()
				return
			}
			for drained := false; !drained; {
				select {
				case r, ok := <-returns:
					if !ok {
						returns, drained = nil, true
					} else {
						c.note(r)
					}
				default:
					drained = true
				}
			}
			c.pass(cf.DeliveryTag)
		}
	}
}

func (c *Channel) note(r amqp.Return) {
	if r.CorrelationId == "" {
		return
	}
	c.mu.Lock()
	c.returned[r.CorrelationId] = r
	c.mu.Unlock()
}

// pass marks every tag up to tag as passed and wakes their waiters.
// Confirms come in tag order, one per tag, so this looks at the new tags
// only (not at every waiter: thousands wait during a burst of hops).
func (c *Channel) pass(tag uint64) {
	c.mu.Lock()
	for t := c.seen + 1; t <= tag; t++ {
		if w, ok := c.waiting[t]; ok {
			close(w)
			delete(c.waiting, t)
		}
	}
	c.seen = max(c.seen, tag)
	c.mu.Unlock()
}

// passed waits until the watcher passed tag's confirm; false if the
// channel closed first or ctx ended.
func (c *Channel) passed(ctx context.Context, tag uint64) bool {
	c.mu.Lock()
	if c.seen >= tag {
		c.mu.Unlock()
		return true
	}
	if c.ended {
		c.mu.Unlock()
		return false
	}
	w, ok := c.waiting[tag]
	if !ok {
		w = make(chan struct{})
		c.waiting[tag] = w
	}
	c.mu.Unlock()
	select {
	case <-w:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen < tag {
		delete(c.waiting, tag)
		return false
	}
	return true
}

// take removes and returns the return noted for publish id, if any.
func (c *Channel) take(id string) (amqp.Return, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.returned[id]
	delete(c.returned, id)
	return r, ok
}

// publish sends p and returns a function that waits until the broker
// confirmed it and, for a mandatory publish, did not return it. id names
// the message in errors.
func (c *Channel) publish(ctx context.Context, ex, key string, mandatory bool, id string, p amqp.Publishing) (func(context.Context) error, error) {
	if mandatory {
		p.CorrelationId = strconv.FormatUint(c.seq.Add(1), 36)
	}
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, ex, key, mandatory, false, p)
	if err != nil {
		return nil, fmt.Errorf("%w: publish %s: %w", ErrNotConfirmed, id, err)
	}
	return func(ctx context.Context) error {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("%w: confirm of %s: %w", ErrNotConfirmed, id, err)
		}
		if !ok {
			return fmt.Errorf("%w: %s %w (queue full or unavailable)", ErrNotConfirmed, id, ErrNacked)
		}
		if !mandatory {
			return nil
		}
		if !c.passed(ctx, dc.DeliveryTag) {
			if ctx.Err() != nil {
				go c.forget(dc.DeliveryTag, p.CorrelationId)
				return fmt.Errorf("%w: confirm of %s: %w", ErrNotConfirmed, id, ctx.Err())
			}
			return fmt.Errorf("%w: %s: channel closed before its confirm was checked for a return", ErrNotConfirmed, id)
		}
		if r, ok := c.take(p.CorrelationId); ok {
			return fmt.Errorf("%w: %s to exchange %q key %q: %d %s", ErrReturned, id, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText)
		}
		return nil
	}, nil
}

// forget drops the return noted for a publish whose caller stopped waiting,
// once its confirm passed (or the channel closed, or 30 s went by), so
// abandoned publishes leave nothing behind.
func (c *Channel) forget(tag uint64, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.passed(ctx, tag)
	c.take(id)
}

// wait publishes and waits for the outcome.
func (c *Channel) wait(ctx context.Context, ex, key string, mandatory bool, id string, p amqp.Publishing) error {
	w, err := c.publish(ctx, ex, key, mandatory, id, p)
	if err != nil {
		return err
	}
	return w(ctx)
}
