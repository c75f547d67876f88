package domain

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestOrderTransitions(t *testing.T) {
	tests := []struct {
		name   string
		from   OrderStatus
		apply  func(*Order) Change
		want   Change
		status OrderStatus
	}{
		{"pay unpaid", OrderUnpaid, func(o *Order) Change { return o.MarkPaid(t0) }, Applied, OrderPaid},
		{"pay paid again", OrderPaid, func(o *Order) Change { return o.MarkPaid(t0) }, NoOp, OrderPaid},
		{"pay cancelled", OrderCancelled, func(o *Order) Change { return o.MarkPaid(t0) }, Refused, OrderCancelled},
		{"cancel unpaid", OrderUnpaid, func(o *Order) Change { return o.Cancel(t0, CancelPaymentTimeout) }, Applied, OrderCancelled},
		{"cancel cancelled again", OrderCancelled, func(o *Order) Change { return o.Cancel(t0, CancelPaymentTimeout) }, NoOp, OrderCancelled},
		{"cancel paid", OrderPaid, func(o *Order) Change { return o.Cancel(t0, CancelPaymentTimeout) }, Refused, OrderPaid},
		{"extend unpaid", OrderUnpaid, func(o *Order) Change { return o.ExtendDeadline(t0.Add(time.Hour)) }, Applied, OrderUnpaid},
		{"extend earlier", OrderUnpaid, func(o *Order) Change { return o.ExtendDeadline(t0.Add(-time.Hour)) }, NoOp, OrderUnpaid},
		{"extend paid", OrderPaid, func(o *Order) Change { return o.ExtendDeadline(t0.Add(time.Hour)) }, Refused, OrderPaid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Order{ID: "o1", Status: tc.from, Deadline: t0}
			before := o
			got := tc.apply(&o)
			if got != tc.want {
				t.Fatalf("change = %v, want %v", got, tc.want)
			}
			if o.Status != tc.status {
				t.Fatalf("status = %v, want %v", o.Status, tc.status)
			}
			if got != Applied && !reflect.DeepEqual(o, before) {
				t.Fatalf("a %v transition modified the order: %+v", got, o)
			}
		})
	}
}

func TestOrderCancelRecordsReason(t *testing.T) {
	o, err := NewOrder("o1", "u1", []OrderLine{{ItemID: "a", Quantity: 2, PriceCents: 150}, {ItemID: "b", Quantity: 1, PriceCents: 99}}, t0, t0.Add(time.Minute))
	if err != nil || o.TotalCents != 399 || o.Status != OrderUnpaid {
		t.Fatalf("new order = %+v", o)
	}
	o.Cancel(t0, CancelPaymentTimeout)
	if o.CancelReason != CancelPaymentTimeout || !o.CancelledAt.Equal(t0) {
		t.Fatalf("cancelled order = %+v", o)
	}
}

func TestPayOrderTransitions(t *testing.T) {
	tests := []struct {
		name   string
		from   PayStatus
		close  bool
		want   Change
		status PayStatus
	}{
		{"succeed waiting", PayWaiting, false, Applied, PaySuccess},
		{"succeed success", PaySuccess, false, NoOp, PaySuccess},
		{"succeed closed", PayClosed, false, Refused, PayClosed},
		{"close waiting", PayWaiting, true, Applied, PayClosed},
		{"close closed", PayClosed, true, NoOp, PayClosed},
		{"close success", PaySuccess, true, Refused, PaySuccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := PayOrder{Status: tc.from}
			var got Change
			if tc.close {
				got = p.Close(t0)
			} else {
				got = p.Succeed(t0)
			}
			if got != tc.want || p.Status != tc.status {
				t.Fatalf("got %v/%v, want %v/%v", got, p.Status, tc.want, tc.status)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	items := func() map[string]*Item {
		return map[string]*Item{"a": {ID: "a", PriceCents: 100, Stock: 5}, "b": {ID: "b", PriceCents: 7, Stock: 1}}
	}
	tests := []struct {
		name    string
		wants   []Want
		err     error
		stockA  int64
		stockB  int64
		priceOf int64
	}{
		{"all fit", []Want{{"a", 5}, {"b", 1}}, nil, 0, 0, 500},
		{"one short: nothing taken", []Want{{"a", 2}, {"b", 2}}, ErrInsufficientStock, 5, 1, 0},
		{"unknown: nothing taken", []Want{{"a", 1}, {"zz", 1}}, ErrUnknownItem, 5, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := items()
			avail := map[string][]int64{"a": {m["a"].Stock}, "b": {m["b"].Stock}}
			lines, _, err := Reserve(m, avail, tc.wants, identity)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if avail["a"][0] != tc.stockA || avail["b"][0] != tc.stockB {
				t.Fatalf("stock a=%d b=%d, want %d %d", avail["a"][0], avail["b"][0], tc.stockA, tc.stockB)
			}
			if err == nil && lines[0].PriceCents*lines[0].Quantity != tc.priceOf {
				t.Fatalf("lines = %+v", lines)
			}
		})
	}
}

func identity(string) func(int) []int {
	return func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
}

// An order takes from the shards in the order given, spilling over to the
// next when one runs short, and only where there is stock.
func TestReserveSpillsOverShards(t *testing.T) {
	items := map[string]*Item{"a": {ID: "a", PriceCents: 2, Shards: 4}}
	avail := map[string][]int64{"a": {1, 0, 5, 2}}
	reverse := func(string) func(int) []int { return func(n int) []int { return []int{3, 2, 1, 0}[:n] } }
	lines, takes, err := Reserve(items, avail, []Want{{"a", 6}}, reverse)
	if err != nil {
		t.Fatal(err)
	}
	want := []Take{{"a", 3, 2}, {"a", 2, 4}}
	if !slices.Equal(takes, want) || lines[0].Quantity != 6 || !slices.Equal(avail["a"], []int64{1, 0, 1, 0}) {
		t.Fatalf("takes %v lines %v avail %v", takes, lines, avail["a"])
	}
	// 2 left in all: 3 is refused and nothing moves.
	if _, _, err := Reserve(items, avail, []Want{{"a", 3}}, reverse); !errors.Is(err, ErrInsufficientStock) || !slices.Equal(avail["a"], []int64{1, 0, 1, 0}) {
		t.Fatalf("err %v avail %v", err, avail["a"])
	}
}

func TestSpreadAndShardFor(t *testing.T) {
	if got := Spread(10, 4); !slices.Equal(got, []int64{3, 3, 2, 2}) {
		t.Fatalf("Spread(10,4) = %v", got)
	}
	if got := Spread(5, 0); !slices.Equal(got, []int64{5}) {
		t.Fatalf("Spread(5,0) = %v", got)
	}
	for _, c := range []struct{ rec, k, want int }{{5, 16, 5}, {5, 4, 1}, {5, 1, 0}, {0, 0, 0}} {
		if got := ShardFor(c.rec, c.k); got != c.want {
			t.Fatalf("ShardFor(%d,%d) = %d, want %d", c.rec, c.k, got, c.want)
		}
	}
}

func TestReservationRestoreOnce(t *testing.T) {
	r := Reservation{OrderID: "o", State: Reserved, Lines: []OrderLine{{ItemID: "a", Quantity: 3}}}
	if back, c := r.Restore(t0); c != Applied || !slices.Equal(back, []Take{{"a", 0, 3}}) {
		t.Fatalf("first restore %v gives %v", c, back)
	}
	if back, c := r.Restore(t0); c != NoOp || back != nil {
		t.Fatalf("second restore %v gives %v", c, back)
	}
	r = Reservation{OrderID: "o", State: Ordered, Lines: []OrderLine{{ItemID: "a", Quantity: 3}}, Takes: []Take{{"a", 7, 1}, {"a", 2, 2}}}
	if back, _ := r.Restore(t0); !slices.Equal(back, r.Takes) {
		t.Fatalf("sharded restore gives %v", back)
	}
}

func TestWalletDebit(t *testing.T) {
	w := Wallet{BalanceCents: 100}
	if err := w.Debit(101); !errors.Is(err, ErrInsufficientBalance) || w.BalanceCents != 100 {
		t.Fatalf("overdraft: %v, %d", err, w.BalanceCents)
	}
	if err := w.Debit(-1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative: %v", err)
	}
	if err := w.Debit(100); err != nil || w.BalanceCents != 0 {
		t.Fatalf("exact: %v, %d", err, w.BalanceCents)
	}
}

func TestCart(t *testing.T) {
	c := Cart{UserID: "u"}
	steps := []struct {
		name    string
		do      func() bool
		changed bool
		lines   int
	}{
		{"add b", func() bool { return c.Set("b", 1) }, true, 1},
		{"add a", func() bool { return c.Set("a", 2) }, true, 2},
		{"same qty", func() bool { return c.Set("a", 2) }, false, 2},
		{"remove missing", func() bool { return c.Set("z", 0) }, false, 2},
		{"clear a,z", func() bool { return c.Remove([]string{"a", "z"}) }, true, 1},
		{"clear a again", func() bool { return c.Remove([]string{"a"}) }, false, 1},
	}
	for _, s := range steps {
		if got := s.do(); got != s.changed || len(c.Lines) != s.lines {
			t.Fatalf("%s: changed=%v lines=%v", s.name, got, c.Lines)
		}
	}
	if c.Lines[0].ItemID != "b" {
		t.Fatalf("lines = %+v", c.Lines)
	}
}

func TestCheckWants(t *testing.T) {
	tests := []struct {
		name  string
		wants []Want
		ok    bool
	}{
		{"ok", []Want{{"i1", 1}, {"i-2.x_y", 1000}}, true},
		{"empty", nil, false},
		{"zero qty", []Want{{"i1", 0}}, false},
		{"negative", []Want{{"i1", -3}}, false},
		{"huge", []Want{{"i1", 1001}}, false},
		{"duplicate", []Want{{"i1", 1}, {"i1", 2}}, false},
		{"slash", []Want{{"a/b", 1}}, false},
		{"dotdot", []Want{{"..", 1}}, false},
		{"reserved", []Want{{"__x__", 1}}, false},
		{"long", []Want{{strings.Repeat("a", 129), 1}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckWants(tc.wants)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v is not ErrInvalid", err)
			}
		})
	}
	many := make([]Want, MaxLinesPerOrder+1)
	for i := range many {
		many[i] = Want{ItemID: "i" + strings.Repeat("x", i), Quantity: 1}
	}
	if CheckWants(many) == nil {
		t.Fatal("too many lines accepted")
	}
}

// Money never wraps: a line or an order total beyond int64 cents is an
// *InvalidError (ErrAmountOverflow), and Reserve then takes nothing.
func TestMoneyNeverWraps(t *testing.T) {
	const big = 4_000_000_000_000_000_000
	tests := []struct {
		name  string
		lines []OrderLine
		total int64
		ok    bool
	}{
		{"fits", []OrderLine{{"a", 3, 100}, {"b", 1, 7}}, 307, true},
		{"line overflows", []OrderLine{{"a", 3, big}}, 0, false},
		{"sum overflows", []OrderLine{{"a", 2, big}, {"b", 1, big}}, 0, false},
		{"maximal order fits", maximalOrder(), MaxOrderCents, true},
		{"negative price", []OrderLine{{"a", 1, -1}}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Total(tc.lines)
			if tc.ok != (err == nil) || got != tc.total {
				t.Fatalf("Total = %d, %v", got, err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v is not ErrInvalid", err)
			}
		})
	}
	if _, err := Total([]OrderLine{{"a", 3, big}}); !errors.Is(err, ErrAmountOverflow) {
		t.Fatalf("overflow error %v is not ErrAmountOverflow", err)
	}
	if MaxBalanceCents+MaxOrderCents < 0 || MaxOrderCents <= 0 {
		t.Fatal("the money bounds wrap themselves")
	}
	items := map[string]*Item{"a": {ID: "a", PriceCents: big, Stock: 10}}
	if _, _, err := Reserve(items, map[string][]int64{"a": {10}}, []Want{{"a", 3}}, identity); !errors.Is(err, ErrAmountOverflow) || items["a"].Stock != 10 {
		t.Fatalf("Reserve of an overflowing order: %v, stock %d", err, items["a"].Stock)
	}
	if _, err := NewOrder("o", "u", []OrderLine{{"a", 3, big}}, t0, t0); !errors.Is(err, ErrAmountOverflow) {
		t.Fatalf("NewOrder of an overflowing order: %v", err)
	}
}

func maximalOrder() []OrderLine {
	lines := make([]OrderLine, MaxLinesPerOrder)
	for i := range lines {
		lines[i] = OrderLine{ItemID: strings.Repeat("x", i+1), Quantity: MaxQuantityPerRow, PriceCents: MaxPriceCents}
	}
	return lines
}
