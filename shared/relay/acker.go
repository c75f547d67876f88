package relay

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acker batches acknowledgements. Delivery tags on a channel are
// consecutive, so once every tag up to T is settled, one ack with
// multiple=true covers them all: one frame and one syscall instead of one
// per message. A completion stuck behind a slower one (a gap) is acked on
// its own after maxWait, so no message waits long for its ack. Requeues are
// sent at once, on their own.
type acker struct {
	ch      *amqp.Channel
	maxWait time.Duration
	frames  *atomic.Int64 // counts ack frames sent
	log     *slog.Logger
	failed  atomic.Bool // an ack or nack failed (logged once per channel)

	mu      sync.Mutex
	next    uint64               // lowest tag not yet covered by an ack or requeue
	pending map[uint64]time.Time // completed, awaiting a batched ack
	order   []uint64             // pending tags in completion order (oldest first)
	settled map[uint64]struct{}  // acked or requeued on their own
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func newAcker(ch *amqp.Channel, frames *atomic.Int64, log *slog.Logger) *acker {
	a := &acker{ch: ch, frames: frames, log: log, maxWait: 150 * time.Millisecond, next: 1, pending: map[uint64]time.Time{}, settled: map[uint64]struct{}{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go a.loop()
	return a
}

// ack settles tag as delivered.
func (a *acker) ack(tag uint64) {
	a.mu.Lock()
	a.pending[tag] = time.Now()
	a.order = append(a.order, tag)
	n := len(a.pending)
	a.mu.Unlock()
	if n == 1 || n >= 64 { // the first to wait starts the flushing; many flush now
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// requeue returns tag to the queue now, with basic.reject: every supported
// broker counts a rejected message toward its queue's x-delivery-limit,
// while RabbitMQ 4.3 no longer counts basic.nack(requeue) (unlimited
// explicit returns), so a message the relay kept giving back would loop
// forever instead of ending in the dead-letter queue.
func (a *acker) requeue(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.check("requeue", a.ch.Reject(tag, true))
	a.settled[tag] = struct{}{}
}

// check logs the first failed ack or nack of this channel. It loses
// nothing: the channel is closed then, and the broker redelivers every
// message it had not acked (duplicates, which the receiver absorbs), so one
// line per channel says what happened without a line per message.
func (a *acker) check(what string, err error) {
	if err != nil && a.failed.CompareAndSwap(false, true) {
		a.log.Warn(what+" failed; the broker redelivers this channel's unacked messages", "error", err.Error())
	}
}

// loop flushes every 2 ms while completions wait, and sleeps otherwise: an
// idle relay spends no CPU here.
func (a *acker) loop() {
	defer close(a.stopped)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-a.stop:
			a.flush(true)
			return
		case <-a.wake:
		}
		for a.flush(false) > 0 {
			t.Reset(2 * time.Millisecond)
			select {
			case <-a.stop:
				t.Stop()
				a.flush(true)
				return
			case <-t.C:
			case <-a.wake:
				t.Stop()
			}
		}
	}
}

// flush acks the settled prefix with one multiple ack, and gap-stuck
// completions older than maxWait (or all, when final) on their own. It
// returns how many completions still wait.
func (a *acker) flush(final bool) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var last uint64
	for {
		if _, ok := a.pending[a.next]; ok {
			delete(a.pending, a.next)
			last = a.next
		} else if _, ok := a.settled[a.next]; ok {
			delete(a.settled, a.next)
		} else {
			break
		}
		a.next++
	}
	if last > 0 {
		a.check("ack", a.ch.Ack(last, true))
		a.frames.Add(1)
	}
	// Completions stuck behind a gap longer than maxWait: ack on their own,
	// oldest first; entries already covered by the multiple ack are skipped.
	now := time.Now()
	i := 0
	for ; i < len(a.order); i++ {
		tag := a.order[i]
		at, ok := a.pending[tag]
		if !ok {
			continue
		}
		if !final && now.Sub(at) < a.maxWait {
			break
		}
		a.check("ack", a.ch.Ack(tag, false))
		a.frames.Add(1)
		delete(a.pending, tag)
		a.settled[tag] = struct{}{}
	}
	a.order = a.order[i:]
	if len(a.pending) == 0 {
		a.order = a.order[:0]
	}
	return len(a.pending)
}

// close flushes everything and stops.
func (a *acker) close() {
	close(a.stop)
	<-a.stopped
}
