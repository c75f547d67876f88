package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"4.4.0": true, "4.4.0-dev": true, "4.10.1": true, "5.0.0": true,
		"4.3.6": false, "3.10.8": false, "": false, "x": false} {
		if AtLeast(v, 4, 4) != want {
			t.Errorf("AtLeast(%q, 4.4) = %v", v, !want)
		}
	}
}

// A native message carries its due time in milliseconds, never further
// ahead than MaxNativeDelay; one already due carries none.
func TestNativeEnvelope(t *testing.T) {
	topo := Topology{Prefix: "p", Mode: ModeNative}
	now := time.UnixMilli(1_800_000_000_000)
	for _, c := range []struct {
		due  time.Time
		want any
	}{
		{now.Add(90 * time.Second), now.Add(90 * time.Second).UnixMilli()},
		{now.Add(400 * 24 * time.Hour), now.Add(MaxNativeDelay).UnixMilli()},
		{now.Add(-time.Second), nil},
	} {
		ex, key, mandatory, p := topo.Envelope(Message{ID: "m", Type: "t", DueAt: c.due}, now)
		if ex != topo.HopExchange() || key != "" || !mandatory {
			t.Errorf("due %v: routed to %q %q mandatory=%v, want the due queue", c.due.Sub(now), ex, key, mandatory)
		}
		if got := p.Headers[NativeHeader]; got != c.want {
			t.Errorf("due %v: %s = %v (%T), want %v", c.due.Sub(now), NativeHeader, got, got, c.want)
		}
	}
}

// On a broker older than 4.4 (the machine's 3.10, CI's 4.3) native mode is
// refused before anything is declared: its quorum queues would deliver at
// once.
func TestNativeModeRefusedBefore44(t *testing.T) {
	url := testenv.AMQPURL(t)
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := c.Properties["version"].(string)
	_ = c.Close()
	if AtLeast(v, 4, 4) {
		t.Skipf("the broker is %s: native mode is supported", v)
	}
	topo := Topology{Prefix: testenv.UniqueName("ot-native-refused"), Mode: ModeNative}
	p := NewPublisher(url, topo)
	defer p.Close()
	err = p.Publish(context.Background(), Message{ID: "m", Type: "t", DueAt: time.Now().Add(time.Minute)})
	if err == nil || !strings.Contains(err.Error(), "needs RabbitMQ 4.4") {
		t.Fatalf("publish in native mode on RabbitMQ %s: %v, want a refusal naming 4.4", v, err)
	}
	if err := testenv.OnAMQPChannel(url, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(topo.DueQueue(), true, false, false, false, quorum(nil))
		return err
	}); err == nil {
		t.Errorf("the refused topology's due queue was declared")
	}
}

// On RabbitMQ 4.4 (RABBITMQ44_URL): the due queue keeps each message back
// until its due time — none comes early — and delivers every one.
func TestNativeModeHoldsUntilDue(t *testing.T) {
	url := testenv.NativeAMQPURL(t)
	topo := Topology{Prefix: testenv.UniqueName("ot-native"), Mode: ModeNative}
	p := NewPublisher(url, topo)
	defer p.Close()
	t.Cleanup(func() {
		if err := testenv.OnAMQPChannel(url, topo.Delete); err != nil {
			t.Errorf("delete topology: %v", err)
		}
	})
	const n = 50
	start := time.Now()
	due := map[string]time.Time{}
	for i := range n {
		id := fmt.Sprintf("m%02d", i)
		// Published out of order: due 1–3 s ahead, later ones first.
		due[id] = start.Add(3*time.Second - time.Duration(i)*40*time.Millisecond)
		if err := p.Publish(context.Background(), Message{ID: id, Type: "t", DueAt: due[id]}); err != nil {
			t.Fatal(err)
		}
	}
	ch := testenv.AMQPChannel(t, url)
	deliveries, err := ch.Consume(topo.DueQueue(), "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(60 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case d := <-deliveries:
			at := time.Now()
			m, err := FromDelivery(d)
			if err != nil {
				t.Fatal(err)
			}
			// The broker keeps milliseconds: a delivery may precede the
			// nanosecond due time by less than one.
			if early := due[m.ID].Sub(at); early >= time.Millisecond {
				t.Errorf("%s delivered %v before its due time", m.ID, early)
			}
		case <-timeout:
			t.Fatalf("%d of %d delivered within a minute", got, n)
		}
	}
}
