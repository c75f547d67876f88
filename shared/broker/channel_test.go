package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

// Against the real RabbitMQ: a mandatory publish that no queue takes is
// confirmed by the broker (after a basic.return); the channel must count
// it as not published, and never mistake a routed publish for a returned
// one, however many are in flight at once.
func TestReturnedPublishIsNotConfirmed(t *testing.T) {
	raw := testenv.AMQPChannel(t, testenv.AMQPURL(t))
	queue := testenv.UniqueName("ot-returns")
	if _, err := raw.QueueDeclare(queue, false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	ch, err := NewChannel(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// 2,000 publishes in flight together, every third to a queue that does
	// not exist.
	const n = 2000
	type result struct {
		routed bool
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		routed := i%3 != 0
		key := queue
		if !routed {
			key = queue + "-missing"
		}
		wait, err := ch.publish(ctx, "", key, true, fmt.Sprint(i), amqp.Publishing{Body: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = result{routed, wait(ctx)}
		}()
	}
	wg.Wait()
	got := 0
	for i, r := range results {
		switch {
		case r.routed && r.err != nil:
			t.Errorf("publish %d reached its queue but failed: %v", i, r.err)
		case !r.routed && !errors.Is(r.err, ErrReturned):
			t.Errorf("publish %d had no queue but returned %v, want ErrReturned", i, r.err)
		case !r.routed && !errors.Is(r.err, ErrNotConfirmed):
			t.Errorf("publish %d: ErrReturned must also be ErrNotConfirmed", i)
		case r.routed:
			got++
		}
	}
	q, err := raw.QueueDeclarePassive(queue, false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != got {
		t.Errorf("queue holds %d messages, %d publishes were counted", q.Messages, got)
	}
	if len(ch.returned) != 0 || len(ch.waiting) != 0 {
		t.Errorf("bookkeeping left behind: %d returns, %d waiters", len(ch.returned), len(ch.waiting))
	}

	// A closed channel fails a publish; it never hangs or counts it.
	_ = raw.Close()
	if err := ch.wait(ctx, "", queue, true, "after-close", amqp.Publishing{}); !errors.Is(err, ErrNotConfirmed) {
		t.Errorf("publish on a closed channel: %v, want ErrNotConfirmed", err)
	}
}

// A Publisher whose timer would land in a deleted tier queue reports the
// publish as failed (CreateOrder compensates), and its next publish
// declares the topology again, so the one after that is kept.
func TestPublisherRedeclaresAfterReturn(t *testing.T) {
	url := testenv.AMQPURL(t)
	topo := Topology{Prefix: testenv.UniqueName("ot-returns"), Mode: ModeLadder, Tiers: 6}
	p := NewPublisher(url, topo)
	defer p.Close()
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(url, topo.Delete) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := func(id string) Message {
		return Message{ID: id, Type: "t", Subject: "o", Data: []byte("{}"), DueAt: time.Now().Add(time.Minute)}
	}
	if err := p.Publish(ctx, msg("first")); err != nil {
		t.Fatal(err)
	}
	_, tier := topo.Route(time.Minute)
	admin := testenv.AMQPChannel(t, url)
	if _, err := admin.QueueDelete(tier, false, false, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, msg("lost")); !errors.Is(err, ErrReturned) {
		t.Fatalf("publish into a deleted tier: %v, want ErrReturned", err)
	}
	if err := p.Publish(ctx, msg("after")); err != nil {
		t.Fatalf("publish after the return: %v (the topology should be declared again)", err)
	}
	q, err := admin.QueueDeclarePassive(tier, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("tier %s not declared again: %v", tier, err)
	}
	if q.Messages != 1 {
		t.Errorf("tier %s holds %d messages, want 1 (the one after the return)", tier, q.Messages)
	}
}
