package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

func delivery(p amqp.Publishing) amqp.Delivery {
	return amqp.Delivery{MessageId: p.MessageId, Headers: p.Headers, Body: p.Body}
}

// Every field survives the trip through the publishing and back, whatever
// characters the strings hold; the due time is rounded up, never down.
func TestMessageRoundTrip(t *testing.T) {
	due := time.Date(2026, 11, 26, 8, 0, 0, 123_400_000, time.UTC)
	for _, m := range []Message{
		{ID: "timeout-o1-1", Type: "orders.timeout.due.v1", Subject: "o1", Data: []byte(`{"orderId":"o1"}`), DueAt: due,
			CreatedAt: due.Add(-time.Hour), Attempt: 3, Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{ID: "x", Type: "t", Subject: "", DueAt: due},
		{ID: "x", Type: "t y%z=w", Subject: "a b\tc\x00d\x7fe%41 ü=", DueAt: due, Reason: "target answered 400: bad"},
		{ID: "x", Type: "t", Subject: "o", DueAt: due.Add(400 * time.Microsecond)},
	} {
		got, err := FromDelivery(delivery(m.Publishing()))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if got.DueAt.Before(m.DueAt) || got.DueAt.Sub(m.DueAt) >= time.Millisecond {
			t.Errorf("due %v read back as %v", m.DueAt, got.DueAt)
		}
		want := m
		want.DueAt, got.DueAt = time.Time{}, time.Time{}
		if !m.CreatedAt.IsZero() {
			want.CreatedAt = m.CreatedAt.Truncate(time.Millisecond)
		}
		if got.ID != want.ID || got.Type != want.Type || got.Subject != want.Subject || string(got.Data) != string(want.Data) ||
			!got.CreatedAt.Equal(want.CreatedAt) || got.Attempt != want.Attempt || got.Trace != want.Trace || got.Reason != want.Reason {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

// Messages published before HeaderMeta (one header per field) still read.
func TestMessageLegacyHeaders(t *testing.T) {
	d := amqp.Delivery{MessageId: "timeout-o1-1", Body: []byte("{}"), Headers: amqp.Table{
		HeaderDueAt: int64(1764144000123), HeaderAttempt: int32(2), HeaderType: "orders.timeout.due.v1",
		HeaderSubject: "o1", HeaderFirstSeen: int64(1764140000000), HeaderTrace: "00-x", HeaderReason: "r",
		"x-death": []any{amqp.Table{"count": int64(1)}},
	}}
	m, err := FromDelivery(d)
	if err != nil {
		t.Fatal(err)
	}
	if m.DueAt.UnixMilli() != 1764144000123 || m.Attempt != 2 || m.Type != "orders.timeout.due.v1" || m.Subject != "o1" ||
		m.CreatedAt.UnixMilli() != 1764140000000 || m.Trace != "00-x" || m.Reason != "r" {
		t.Fatalf("legacy message read as %+v", m)
	}
}

// A message the relay cannot read is an error that names what is wrong,
// never a zero due time (which would fire at once).
func TestMessageMalformed(t *testing.T) {
	for meta, want := range map[string]string{
		"type=t":                   "no due time",
		"due=x type=t":             "field due",
		"due=1 attempt=1.5 type=t": "field attempt",
		"due=1 type":               "no '='",
		"due=1 type=%zz":           "field type",
		"due=1":                    "type missing",
	} {
		_, err := FromDelivery(amqp.Delivery{MessageId: "m", Headers: amqp.Table{HeaderMeta: meta}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", meta, err, want)
		}
	}
	if _, err := FromDelivery(amqp.Delivery{MessageId: "m", Headers: amqp.Table{HeaderType: "t"}}); err == nil {
		t.Error("a message with neither header read without error")
	}
	// Keys it does not know are skipped (a newer writer may add some).
	m, err := FromDelivery(amqp.Delivery{MessageId: "m", Headers: amqp.Table{HeaderMeta: "due=5 future=1 type=t"}})
	if err != nil || m.DueAt.UnixMilli() != 5 {
		t.Errorf("unknown key: %+v, %v", m, err)
	}
}

func FuzzMessageMeta(f *testing.F) {
	f.Add("orders.timeout.due.v1", "o1", "00-ab-cd-01", int64(1764144000123), 2)
	f.Add("t y", "a%20b=c", "", int64(0), 0)
	f.Fuzz(func(t *testing.T, typ, subject, trace string, dueMS int64, attempt int) {
		if typ == "" {
			return
		}
		m := Message{ID: "m", Type: typ, Subject: subject, Trace: trace, DueAt: time.UnixMilli(dueMS), Attempt: attempt}
		got, err := FromDelivery(delivery(m.Publishing()))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if got.Type != typ || got.Subject != subject || got.Trace != trace || got.DueAt.UnixMilli() != dueMS || got.Attempt != attempt {
			t.Fatalf("%+v read back as %+v", m, got)
		}
	})
}

// A timer that went down the ladder carries the broker's "expired" death
// from each tier: that is its normal path, not a dead letter, so it reads
// back with no reason — checked on the real broker — while a real broker
// death (over the delivery limit) still does.
func TestLiveMessagesCarryNoDeath(t *testing.T) {
	if m, _ := FromDelivery(amqp.Delivery{MessageId: "m", Headers: amqp.Table{HeaderMeta: "due=5 type=t",
		"x-death": []any{amqp.Table{"reason": "delivery_limit", "queue": "ot.due", "count": int64(1)}}}}); m.Reason != "broker: delivery_limit in ot.due" {
		t.Errorf("a real death read as %q", m.Reason)
	}
	url := testenv.AMQPURL(t)
	topo := Topology{Prefix: testenv.UniqueName("ot-nodeath"), Mode: ModeLadder, Tiers: firstTier + 2}
	if err := testenv.OnAMQPChannel(url, topo.Declare); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(url, topo.Delete) })
	p := NewPublisher(url, topo)
	defer p.Close()
	if err := p.Publish(context.Background(), Message{ID: "hop", Type: "t", DueAt: time.Now().Add(HoldMax + TierTTL(firstTier))}); err != nil {
		t.Fatal(err)
	}
	conn, err := Dial(url, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(HoldMax + 2*TierTTL(firstTier) + 10*time.Second)
	for {
		d, ok, err := ch.Get(topo.DueQueue(), true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if _, expired := d.Headers["x-death"]; !expired {
				t.Fatalf("the message reached %s without going through a tier: %v", topo.DueQueue(), d.Headers)
			}
			m, err := FromDelivery(d)
			if err != nil || m.Reason != "" {
				t.Fatalf("a live message read back with reason %q (%v)", m.Reason, err)
			}
			if _, has := m.Publishing().Headers[HeaderReason]; has {
				t.Fatal("its next copy would carry x-dead-reason")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the message never came due")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
