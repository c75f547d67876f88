package stack_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/local/invariant"
	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// spans records every span of the in-process system (functions and relay).
var spans = tracetest.NewSpanRecorder()

// metrics reads the order metrics the system records.
var metrics = sdkmetric.NewManualReader()

func TestMain(m *testing.M) {
	telemetry.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)), true)
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics)))
	os.Exit(testenv.Main(m))
}

func seedBasic(t *testing.T, s *stack.Stack) {
	t.Helper()
	err := seed.Apply(context.Background(), s.Store, seed.Data{
		Items: []seed.Item{
			{ItemID: "i1", Name: "Mug", PriceCents: 1250, Stock: 10},
			{ItemID: "i2", Name: "Tea", PriceCents: 499, Stock: 5},
		},
		Wallets: []seed.Wallet{{UserID: "alice", BalanceCents: 100_00}, {UserID: "bob", BalanceCents: 5_00}},
		Carts:   []seed.Cart{{UserID: "alice", Items: []seed.CartLine{{ItemID: "i1", Quantity: 2}, {ItemID: "i2", Quantity: 1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// basicInitial is what seedBasic puts in, for the invariant check.
var basicInitial = invariant.Initial{
	Stock:   map[string]int64{"i1": 10, "i2": 5},
	Balance: map[string]int64{"alice": 100_00, "bob": 5_00},
}

func create(t *testing.T, s *stack.Stack, user string, timeoutS int, items ...any) createorder.OrderJSON {
	t.Helper()
	var lines []map[string]any
	for i := 0; i+1 < len(items); i += 2 {
		lines = append(lines, map[string]any{"itemId": items[i], "quantity": items[i+1]})
	}
	r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{"items": lines, "paymentTimeoutSeconds": timeoutS}, s.Bearer(user)...)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var o createorder.OrderJSON
	if err := r.JSON(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

func getOrder(t *testing.T, s *stack.Stack, user, id string) createorder.OrderJSON {
	t.Helper()
	r := s.Call(http.MethodGet, s.URL(stack.CreateOrder)+"/"+id, nil, s.Bearer(user)...)
	if r.Status != http.StatusOK {
		t.Fatalf("get order: %d %s", r.Status, r.Body)
	}
	var o createorder.OrderJSON
	if err := r.JSON(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

func waitStatus(t *testing.T, s *stack.Stack, user, id, want string, within time.Duration) createorder.OrderJSON {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		o := getOrder(t, s, user, id)
		if o.Status == want {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s is %s after %v, want %s", id, o.Status, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stock(t *testing.T, s *stack.Stack, item string) int64 {
	t.Helper()
	it, err := s.Store.Item(context.Background(), item)
	if err != nil {
		t.Fatal(err)
	}
	return it.Stock
}

func balance(t *testing.T, s *stack.Stack, user string) int64 {
	t.Helper()
	w, err := s.Store.Wallet(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return w.BalanceCents
}

func TestCreatePayPaid(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	o := create(t, s, "alice", 60, "i1", 2, "i2", 1)
	if o.Status != "UNPAID" || o.TotalCents != 2*1250+499 || o.UserID != "alice" || len(o.Items) != 2 || o.Items[0].PriceCents != 1250 {
		t.Fatalf("created %+v", o)
	}
	if stock(t, s, "i1") != 8 || stock(t, s, "i2") != 4 {
		t.Fatal("stock not deducted")
	}
	cart := s.Call(http.MethodGet, s.URL(stack.ClearCart)+"/", nil, s.Bearer("alice")...)
	if cart.Status != 200 || string(cart.Body) != `{"userId":"alice","items":[]}`+"\n" {
		t.Fatalf("cart after order: %d %s", cart.Status, cart.Body)
	}
	r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer("alice")...)
	if r.Status != 200 {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	again := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer("alice")...)
	if again.Status != 200 || string(again.Body) != string(r.Body) {
		t.Fatalf("pay twice: %d %s vs %s", again.Status, again.Body, r.Body)
	}
	paid := waitStatus(t, s, "alice", o.OrderID, "PAID", 10*time.Second)
	if paid.PaidAt == "" {
		t.Fatalf("paid order without paidAt: %+v", paid)
	}
	if b := balance(t, s, "alice"); b != 100_00-o.TotalCents {
		t.Fatalf("balance %d", b)
	}
	// Paid before the deadline: the deadline changes nothing.
	if stock(t, s, "i1") != 8 {
		t.Fatal("stock moved after payment")
	}
}

func TestUnpaidOrderTimesOut(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	o := create(t, s, "alice", 2, "i1", 3)
	if stock(t, s, "i1") != 7 {
		t.Fatal("stock not deducted")
	}
	c := waitStatus(t, s, "alice", o.OrderID, "CANCELLED", 15*time.Second)
	if c.CancelReason != "PAYMENT_TIMEOUT" || c.CancelledAt == "" {
		t.Fatalf("cancelled %+v", c)
	}
	if stock(t, s, "i1") != 10 {
		t.Fatalf("stock %d after timeout, want 10", stock(t, s, "i1"))
	}
	// The pay order is closed: a late payment is refused and debits nothing.
	r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer("alice")...)
	if r.Status != http.StatusConflict || r.ErrorCode() != "ORDER_CLOSED" {
		t.Fatalf("late pay: %d %s", r.Status, r.Body)
	}
	q := s.Call(http.MethodGet, s.URL(stack.Pay)+"/?bizOrderNo="+o.OrderID, nil, s.Internal()...)
	if q.Status != 200 || !contains(q.Body, `"status":"CLOSED"`) {
		t.Fatalf("pay order: %d %s", q.Status, q.Body)
	}
	if b := balance(t, s, "alice"); b != 100_00 {
		t.Fatalf("balance %d", b)
	}
}

func contains(b []byte, s string) bool { return len(b) > 0 && bytesContains(string(b), s) }

func bytesContains(h, n string) bool {
	for i := 0; i+len(n) <= len(h); i++ {
		if h[i:i+len(n)] == n {
			return true
		}
	}
	return false
}

func TestLostAnnouncementFoundAtDeadline(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{DropAnnouncements: true})
	seedBasic(t, s)
	o := create(t, s, "alice", 3, "i2", 2)
	r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer("alice")...)
	if r.Status != 200 {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	time.Sleep(time.Second)
	if got := getOrder(t, s, "alice", o.OrderID); got.Status != "UNPAID" {
		t.Fatalf("announcement was dropped, yet order is %s", got.Status)
	}
	waitStatus(t, s, "alice", o.OrderID, "PAID", 15*time.Second)
	if stock(t, s, "i2") != 3 {
		t.Fatalf("stock %d, want 3 (paid order keeps its stock)", stock(t, s, "i2"))
	}
	checkInvariants(t, s, basicInitial)
}

func TestPayDownAtDeadlineNeverCancels(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	paidO := create(t, s, "alice", 2, "i1", 1)
	unpaidO := create(t, s, "alice", 2, "i2", 1)
	// Pay for the first directly in the store (as if Pay answered and then
	// went down before the announcement), then stop Pay.
	if _, _, err := s.Store.Pay(context.Background(), paidO.OrderID, "alice", "p-x"); err != nil {
		t.Fatal(err)
	}
	s.Stop(stack.Pay)
	time.Sleep(4 * time.Second) // both deadlines pass while Pay is down
	for _, id := range []string{paidO.OrderID, unpaidO.OrderID} {
		if o := getOrder(t, s, "alice", id); o.Status != "UNPAID" {
			t.Fatalf("order %s decided (%s) while Pay was down", id, o.Status)
		}
	}
	s.Restart(stack.Pay)
	waitStatus(t, s, "alice", paidO.OrderID, "PAID", 20*time.Second)
	waitStatus(t, s, "alice", unpaidO.OrderID, "CANCELLED", 20*time.Second)
	if stock(t, s, "i1") != 9 || stock(t, s, "i2") != 5 {
		t.Fatalf("stock i1=%d i2=%d", stock(t, s, "i1"), stock(t, s, "i2"))
	}
	checkInvariants(t, s, basicInitial)
}

func TestIdempotencyKeyOneOrder(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	body := map[string]any{"items": []map[string]any{{"itemId": "i1", "quantity": 1}}, "paymentTimeoutSeconds": 60}
	hdr := append(s.Bearer("alice"), "Idempotency-Key", "k-1")
	const n = 8
	res := make([]stack.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", body, hdr...)
		}()
	}
	wg.Wait()
	ids := map[string]bool{}
	for _, r := range res {
		if r.Status != 200 && r.Status != 201 {
			t.Fatalf("duplicate create: %d %s", r.Status, r.Body)
		}
		var o createorder.OrderJSON
		_ = r.JSON(&o)
		ids[o.OrderID] = true
	}
	if len(ids) != 1 {
		t.Fatalf("%d orders for one key: %v", len(ids), ids)
	}
	if stock(t, s, "i1") != 9 {
		t.Fatalf("stock %d, want 9", stock(t, s, "i1"))
	}
	// The same key with another body is refused; another user's same key is theirs.
	other := map[string]any{"items": []map[string]any{{"itemId": "i1", "quantity": 2}}}
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", other, hdr...); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("key reuse: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", body, append(s.Bearer("bob"), "Idempotency-Key", "k-1")...); r.Status != 201 {
		t.Fatalf("bob's key: %d %s", r.Status, r.Body)
	}
	// A create that failed frees its key: the same request with it, once it
	// can succeed, creates the order.
	big := map[string]any{"items": []map[string]any{{"itemId": "i2", "quantity": 5}}, "paymentTimeoutSeconds": 60}
	retry := append(s.Bearer("alice"), "Idempotency-Key", "k-2")
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", big, retry...); r.Status != http.StatusCreated {
		t.Fatalf("first create with k-2: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", big, append(s.Bearer("alice"), "Idempotency-Key", "k-3")...); r.Status != http.StatusConflict {
		t.Fatalf("create beyond the stock: %d %s", r.Status, r.Body)
	}
	if err := seed.Apply(context.Background(), s.Store, seed.Data{Items: []seed.Item{{ItemID: "i2", Name: "Tea", PriceCents: 499, Stock: 5}}}); err != nil {
		t.Fatal(err)
	}
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", big, append(s.Bearer("alice"), "Idempotency-Key", "k-3")...); r.Status != http.StatusCreated {
		t.Fatalf("retry with the key of a failed create: %d %s, want 201", r.Status, r.Body)
	}
}

func TestCreateFailuresLeaveNothing(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	url := s.URL(stack.CreateOrder) + "/"
	cases := []struct {
		name   string
		items  []map[string]any
		status int
		code   string
	}{
		{"insufficient", []map[string]any{{"itemId": "i1", "quantity": 2}, {"itemId": "i2", "quantity": 6}}, 409, "INSUFFICIENT_STOCK"},
		{"unknown item", []map[string]any{{"itemId": "i1", "quantity": 1}, {"itemId": "nope", "quantity": 1}}, 404, "ITEM_NOT_FOUND"},
	}
	for _, c := range cases {
		r := s.Call(http.MethodPost, url, map[string]any{"items": c.items}, s.Bearer("alice")...)
		if r.Status != c.status || r.ErrorCode() != c.code {
			t.Fatalf("%s: %d %s", c.name, r.Status, r.Body)
		}
	}
	if stock(t, s, "i1") != 10 || stock(t, s, "i2") != 5 {
		t.Fatal("a failed create took stock")
	}
	// DeductStock down: 503 and nothing reserved.
	s.Stop(stack.DeductStock)
	r := s.Call(http.MethodPost, url, map[string]any{"items": []map[string]any{{"itemId": "i1", "quantity": 1}}}, s.Bearer("alice")...)
	if r.Status != 503 || r.ErrorCode() != "UNAVAILABLE" {
		t.Fatalf("stock down: %d %s", r.Status, r.Body)
	}
	s.Restart(stack.DeductStock)
	if stock(t, s, "i1") != 10 {
		t.Fatal("stock taken while DeductStock was down")
	}
}

func TestOwnerOnly(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	o := create(t, s, "alice", 60, "i1", 1)
	if r := s.Call(http.MethodGet, s.URL(stack.CreateOrder)+"/"+o.OrderID, nil, s.Bearer("bob")...); r.Status != 404 {
		t.Fatalf("bob reads alice's order: %d", r.Status)
	}
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer("bob")...); r.Status != 404 {
		t.Fatalf("bob pays alice's order: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodGet, s.URL(stack.Pay)+"/?bizOrderNo="+o.OrderID, nil, s.Bearer("bob")...); r.Status != 404 {
		t.Fatalf("bob reads alice's payment: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodGet, s.URL(stack.Pay)+"/wallet", nil, s.Bearer("bob")...); r.Status != 200 || !contains(r.Body, `"userId":"bob"`) {
		t.Fatalf("bob's wallet: %d %s", r.Status, r.Body)
	}
	// Insufficient balance: 402, nothing debited.
	big := create(t, s, "bob", 60, "i1", 1)
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": big.OrderID}, s.Bearer("bob")...); r.Status != 402 {
		t.Fatalf("poor bob: %d %s", r.Status, r.Body)
	}
	if balance(t, s, "bob") != 5_00 {
		t.Fatal("bob was debited")
	}
}

func TestRedeliveredTimeoutRestoresOnce(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	seedBasic(t, s)
	o := create(t, s, "alice", 1, "i1", 4)
	time.Sleep(1100 * time.Millisecond)
	event := func() stack.Response {
		return s.Call(http.MethodPost, s.URL(stack.HandleTimeout), fmt.Sprintf(`{"orderId":%q,"deadline":%q}`, o.OrderID, o.Deadline),
			"ce-specversion", "1.0", "ce-id", "e-"+o.OrderID, "ce-source", "test", "ce-type", "orders.timeout.due.v1",
			"ce-internaltoken", s.Cfg.InternalSecret)
	}
	var wg sync.WaitGroup
	codes := make([]int, 3)
	for i := range codes {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i] = event().Status }()
	}
	wg.Wait()
	for _, c := range codes {
		if c/100 != 2 {
			t.Fatalf("deliveries answered %v", codes)
		}
	}
	if r := event(); r.Status/100 != 2 {
		t.Fatalf("late duplicate: %d %s", r.Status, r.Body)
	}
	if got := stock(t, s, "i1"); got != 10 {
		t.Fatalf("stock %d after 4 deliveries, want 10", got)
	}
	if got := getOrder(t, s, "alice", o.OrderID); got.Status != string(domain.OrderCancelled) {
		t.Fatalf("status %s", got.Status)
	}
	checkInvariants(t, s, basicInitial)
}
