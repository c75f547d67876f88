package relay

import (
	"log/slog"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A message held while the session is draining goes back to the queue at
// once; it never lands on the work queue after the workers left (with the
// old closed work queue, that was a "send on closed channel" panic).
func TestHoldAfterReleaseRequeues(t *testing.T) {
	url := os.Getenv("AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("RabbitMQ at %s: %v (start it with rabbitmq-server -detached)", url, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Target: "http://127.0.0.1:9/"})
	if err != nil {
		t.Fatal(err)
	}
	c := &consumer{ch: ch, ack: newAcker(ch, &r.Metrics.AckFrames, slog.Default()), hold: time.Second}
	s := &session{r: r, due: c, retry: c, stop: make(chan struct{}), released: make(chan struct{}), timer: map[*waiting]struct{}{}}
	defer c.ack.close()
	s.release()
	r.Metrics.InFlight.Add(1) // the delivery being held
	s.hold(job{tag: 7, c: c}, time.Millisecond)
	s.mu.Lock()
	armed := len(s.timer)
	s.mu.Unlock()
	if armed != 0 {
		t.Fatalf("a timer was armed after release")
	}
	time.Sleep(20 * time.Millisecond)
	if r.Metrics.InFlight.Load() != 0 || r.Metrics.Held.Load() != 0 {
		t.Fatalf("in_flight=%d held=%d", r.Metrics.InFlight.Load(), r.Metrics.Held.Load())
	}
}
