package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

// Against the real RabbitMQ: callers that give up while their publish waits
// for its confirm fail alone. The shared connection stays up, and every
// patient caller's publish on it is confirmed (the publisher used to close
// the connection on any failed publish, losing every confirm in flight).
func TestPublisherCallerGivingUpFailsOnlyItself(t *testing.T) {
	url := testenv.AMQPURL(t)
	topo := Topology{Prefix: testenv.UniqueName("ot-pubcancel"), Mode: ModeLadder, Tiers: firstTier + 1}
	if err := testenv.OnAMQPChannel(url, topo.Declare); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := testenv.OnAMQPChannel(url, topo.Delete); err != nil {
			t.Errorf("delete topology: %v", err)
		}
	})
	p := NewPublisher(url, topo)
	defer p.Close()
	if err := p.Publish(context.Background(), Message{ID: "warm", Type: "t", DueAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	conn := p.conn

	for round := range 3 {
		const n = 200
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			failed  []string
			gaveUp  int
			patient int
		)
		for i := range n {
			impatient := i%2 == 0
			if !impatient {
				patient++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				if impatient {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(3000))*time.Microsecond)
					defer cancel()
				}
				m := Message{ID: fmt.Sprintf("r%d-%d", round, i), Type: "t", DueAt: time.Now(), Data: []byte(`{}`)}
				err := p.Publish(ctx, m)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
				case impatient:
					gaveUp++
				default:
					failed = append(failed, err.Error())
				}
			}()
		}
		wg.Wait()
		if len(failed) > 0 {
			t.Fatalf("round %d: %d of %d patient publishes failed, first: %s", round, len(failed), patient, failed[0])
		}
		t.Logf("round %d: %d patient publishes confirmed, %d impatient callers gave up", round, patient, gaveUp)
	}
	if p.conn != conn {
		t.Fatal("the publisher replaced its connection although the broker never failed")
	}
	// Nothing abandoned stays noted on the channel.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.ch.mu.Lock()
		left := len(p.ch.returned) + len(p.ch.waiting)
		p.ch.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d abandoned publishes still noted on the channel", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The publisher still dials again once the connection really breaks.
	if err := p.conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), Message{ID: "after", Type: "t", DueAt: time.Now()}); err != nil {
		t.Fatalf("publish after the connection closed: %v", err)
	}
	if p.conn == conn {
		t.Fatal("the publisher kept a closed connection")
	}
}

// Against a broker that takes the connection and never answers, three
// callers with a 1 s context each give up after their own second, not
// one after another behind the dial; and with no deadline of its own, a
// publish ends within the publisher's Timeout.
func TestPublisherWaitEndsWithCallersContext(t *testing.T) {
	p := NewPublisher(testenv.SilentBroker(t), Topology{Prefix: "ot-silent", Mode: ModeLadder})
	defer p.Close()
	var wg sync.WaitGroup
	took := make([]time.Duration, 3)
	for i := range took {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			if err := p.Publish(ctx, Message{ID: fmt.Sprint(i), Type: "t", DueAt: time.Now()}); err == nil {
				t.Error("a publish to a silent broker succeeded")
			}
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, d := range took {
		if d > 2*time.Second {
			t.Errorf("caller %d returned after %v; its context ended after 1 s", i, d)
		}
	}
	p.Timeout = 1500 * time.Millisecond
	start := time.Now()
	if err := p.Publish(context.Background(), Message{ID: "x", Type: "t", DueAt: time.Now()}); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("publish without a deadline: %v after %v, want a failure within the 1.5 s timeout", err, time.Since(start))
	}
}
