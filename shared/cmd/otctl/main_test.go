package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
)

// Against the real broker: list shows every dead letter with a count by
// reason, show prints one whole, a redrive needs a selector, a dry run
// changes nothing, and a redrive by order id moves exactly that timer back
// onto the ladder.
func TestOtctlDead(t *testing.T) {
	url := testenv.AMQPURL(t)
	t.Setenv("AMQP_URL", url)
	topo := broker.Topology{Prefix: testenv.UniqueName("ot-otctl"), Mode: broker.ModeLadder, Tiers: 6}
	if err := testenv.OnAMQPChannel(url, topo.Declare); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(url, topo.Delete) })
	raw := testenv.AMQPChannel(t, url)
	ch, err := broker.NewChannel(raw)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, reason := range []string{"target answered 400: bad", "gave up after 20 attempts; last: target answered 503: x", "gave up after 20 attempts; last: delivery failed"} {
		m := events.Timeout("o"+strings.Repeat("x", i+1), now.Add(-time.Minute), now, "")
		if err := broker.PublishDead(context.Background(), ch, topo, m, reason); err != nil {
			t.Fatal(err)
		}
	}
	cli := func(args ...string) (string, error) {
		var b strings.Builder
		err := run(append(args, "-prefix", topo.Prefix), &b, time.Now())
		return b.String(), err
	}
	out, err := cli("dead", "list")
	if err != nil || !strings.Contains(out, "3 dead letters") || !strings.Contains(out, "2  gave up after 20 attempts; last") || !strings.Contains(out, "ox") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := cli("dead", "show", "oxx"); err != nil || !strings.Contains(out, `"orderId": "oxx"`) || !strings.Contains(out, `"deadline"`) {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if _, err := cli("dead", "redrive"); err == nil || !strings.Contains(err.Error(), "selects nothing") {
		t.Fatalf("redrive without a selector: %v", err)
	}
	if out, err := cli("dead", "redrive", "-all", "-dry-run"); err != nil || !strings.Contains(out, "3 would be redriven") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if out, err := cli("dead", "redrive", "-id", "oxx", "-reason", "503"); err != nil || !strings.Contains(out, "1 redriven, 0 skipped, 2 of 3") {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	if out, err := cli("dead", "list"); err != nil || !strings.Contains(out, "2 dead letters") || strings.Contains(out, "oxx ") {
		t.Fatalf("list after the redrive: %v\n%s", err, out)
	}
	q, err := raw.QueueDeclarePassive(topo.DueQueue(), true, false, false, false, map[string]any{"x-queue-type": "quorum"})
	if err != nil || q.Messages != 1 {
		t.Fatalf("due queue after the redrive: %d messages (%v), want the one timer", q.Messages, err)
	}
}
