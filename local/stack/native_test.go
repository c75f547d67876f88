package stack_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/config"
)

// BROKER_MODE=native end to end on RabbitMQ 4.4 (RABBITMQ44_URL): the
// whole stack with its timers parked in the due queue. An unpaid order is
// cancelled at its deadline and its stock comes back; a paid one stays
// PAID when its timer comes; a deadline moved later is honoured (the old
// timer re-schedules); the invariants hold.
func TestNativeModeEndToEnd(t *testing.T) {
	url := testenv.NativeAMQPURL(t)
	s := stack.Start(t, stack.Options{AMQPURL: url, Configure: func(c *config.Config) { c.BrokerMode = broker.ModeNative }})
	seedBasic(t, s)
	unpaid := create(t, s, "alice", 6, "i1", 2)
	paid := create(t, s, "alice", 6, "i2", 1)
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": paid.OrderID}, s.Bearer("alice")...); r.Status != http.StatusOK {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	extended := create(t, s, "alice", 6, "i1", 1)
	later := time.Now().Add(12 * time.Second).UTC().Truncate(time.Second)
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/extend", map[string]any{"orderId": extended.OrderID, "deadline": later.Format(time.RFC3339)}, s.Internal()...); r.Status != http.StatusOK {
		t.Fatalf("extend: %d %s", r.Status, r.Body)
	}
	o := waitStatus(t, s, "alice", unpaid.OrderID, "CANCELLED", 30*time.Second)
	if o.CancelReason != "PAYMENT_TIMEOUT" {
		t.Fatalf("cancelled with %q", o.CancelReason)
	}
	if got := getOrder(t, s, "alice", extended.OrderID); got.Status != "UNPAID" {
		t.Fatalf("the extended order is %s at its first deadline, want UNPAID until %v", got.Status, later)
	}
	waitStatus(t, s, "alice", extended.OrderID, "CANCELLED", 30*time.Second)
	if got := getOrder(t, s, "alice", paid.OrderID); got.Status != "PAID" {
		t.Fatalf("the paid order is %s", got.Status)
	}
	if n := stock(t, s, "i1"); n != 10 {
		t.Fatalf("stock of i1 %d, want 10 back", n)
	}
	checkInvariants(t, s, basicInitial)
	if h := s.Relay.Metrics.Hops.Load(); h > 1 {
		t.Errorf("%d hops: native timers should need none (one for the moved deadline at most)", h)
	}
}
