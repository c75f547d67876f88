package stack_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/local/seed"
	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/shared/config"
)

func seedLimited(t *testing.T, s *stack.Stack, shards int, limit int64) {
	t.Helper()
	err := seed.Apply(context.Background(), s.Store, seed.Data{
		Items: []seed.Item{
			{ItemID: "hot", Name: "Console", PriceCents: 100, Stock: 100, Shards: shards, MaxPerShopper: &limit},
			{ItemID: "free", Name: "Sticker", PriceCents: 10, Stock: 1000},
		},
		Wallets: []seed.Wallet{{UserID: "alice", BalanceCents: 1_000_00}, {UserID: "bob", BalanceCents: 1_000_00}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// createN sends n creates at once for user and counts the answers by
// status and error code.
func createN(t *testing.T, s *stack.Stack, user string, n int, timeoutS int, items ...any) (map[string]int, []createorder.OrderJSON) {
	t.Helper()
	var lines []map[string]any
	for i := 0; i+1 < len(items); i += 2 {
		lines = append(lines, map[string]any{"itemId": items[i], "quantity": items[i+1]})
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		counts  = map[string]int{}
		created []createorder.OrderJSON
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{"items": lines, "paymentTimeoutSeconds": timeoutS}, s.Bearer(user)...)
			mu.Lock()
			defer mu.Unlock()
			counts[fmt.Sprintf("%d %s", r.Status, r.ErrorCode())]++
			var o createorder.OrderJSON
			if r.Status == http.StatusCreated && r.JSON(&o) == nil {
				created = append(created, o)
			}
		}()
	}
	wg.Wait()
	return counts, created
}

func expectCreate(t *testing.T, s *stack.Stack, user string, status int, code string, items ...any) {
	t.Helper()
	var lines []map[string]any
	for i := 0; i+1 < len(items); i += 2 {
		lines = append(lines, map[string]any{"itemId": items[i], "quantity": items[i+1]})
	}
	r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{"items": lines, "paymentTimeoutSeconds": 600}, s.Bearer(user)...)
	if r.Status != status || r.ErrorCode() != code {
		t.Fatalf("create %v for %s: %d %s, want %d %s", items, user, r.Status, r.Body, status, code)
	}
}

func payOrder(t *testing.T, s *stack.Stack, user, id string) {
	t.Helper()
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": id}, s.Bearer(user)...); r.Status != 200 {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
}

// Fifty concurrent creates of one unit by one shopper, on a sharded item
// limited to 3 per shopper, served by two CreateOrder and two DeductStock
// instances: exactly 3 succeed, the rest are PURCHASE_LIMIT with nothing
// reserved. Cancelled units come back to the allowance (the shopper's
// cancel and the deadline); paid ones stay counted; another shopper is
// not affected; the item read shows the limit.
func TestPurchaseLimitPerShopper(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{CreateOrderInstances: 2, DeductStockInstances: 2})
	seedLimited(t, s, 4, 3)
	if r := s.Call(http.MethodGet, s.URL(stack.DeductStock)+"/hot", nil); r.Status != 200 || !contains(r.Body, `"maxPerShopper":3`) {
		t.Fatalf("item read: %d %s", r.Status, r.Body)
	}
	if r := s.Call(http.MethodGet, s.URL(stack.DeductStock)+"/free", nil); r.Status != 200 || contains(r.Body, "maxPerShopper") {
		t.Fatalf("unlimited item read: %d %s", r.Status, r.Body)
	}
	counts, created := createN(t, s, "alice", 50, 600, "hot", 1)
	if counts["201 "] != 3 || counts["409 PURCHASE_LIMIT"] != 47 {
		t.Fatalf("50 concurrent creates: %v", counts)
	}
	if n := stock(t, s, "hot"); n != 97 {
		t.Fatalf("stock %d, want 97: a refused create reserved something", n)
	}
	// A multi-line order over the limit takes nothing, not even its other line.
	expectCreate(t, s, "alice", 409, "PURCHASE_LIMIT", "free", 1, "hot", 1)
	if n := stock(t, s, "free"); n != 1000 {
		t.Fatalf("free stock %d after a refused create", n)
	}
	expectCreate(t, s, "bob", 201, "", "hot", 3)
	expectCreate(t, s, "bob", 409, "PURCHASE_LIMIT", "hot", 1)

	// A shopper's cancel gives the unit back; a paid order keeps it.
	if r := cancelOrder(s, "alice", created[0].OrderID); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	payOrder(t, s, "alice", created[1].OrderID)
	expectCreate(t, s, "alice", 201, "", "hot", 1)
	expectCreate(t, s, "alice", 409, "PURCHASE_LIMIT", "hot", 1)

	// A deadline's cancel gives units back too.
	if r := cancelOrder(s, "alice", created[2].OrderID); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	short := create(t, s, "alice", 2, "hot", 1)
	expectCreate(t, s, "alice", 409, "PURCHASE_LIMIT", "hot", 1)
	waitStatus(t, s, "alice", short.OrderID, "CANCELLED", 30*time.Second)
	expectCreate(t, s, "alice", 201, "", "hot", 1)
	a, err := s.Store.Allowance(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.PaidUnits["hot"] != 1 || a.Held("hot") != 3 {
		t.Fatalf("allowance %+v: want 1 paid unit, 3 held", a)
	}
}

// With a cap of 3 unpaid orders, fifty concurrent creates by one shopper
// from two instances: exactly 3 succeed, the rest TOO_MANY_UNPAID_ORDERS
// with nothing reserved; paying or cancelling one frees a place, and a
// create refused for another reason (insufficient stock) holds none.
func TestUnpaidOrderCap(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{CreateOrderInstances: 2, Configure: func(c *config.Config) { c.MaxUnpaidPerShopper = 3 }})
	seedLimited(t, s, 1, 1000)
	counts, created := createN(t, s, "alice", 50, 600, "free", 1)
	if counts["201 "] != 3 || counts["409 TOO_MANY_UNPAID_ORDERS"] != 47 {
		t.Fatalf("50 concurrent creates: %v", counts)
	}
	if n := stock(t, s, "free"); n != 997 {
		t.Fatalf("stock %d, want 997", n)
	}
	expectCreate(t, s, "bob", 201, "", "free", 1)
	payOrder(t, s, "alice", created[0].OrderID)
	expectCreate(t, s, "alice", 201, "", "free", 1)
	expectCreate(t, s, "alice", 409, "TOO_MANY_UNPAID_ORDERS", "free", 1)
	if r := cancelOrder(s, "alice", created[1].OrderID); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	// Refused for stock: the place it claimed is given back at once.
	expectCreate(t, s, "alice", 409, "INSUFFICIENT_STOCK", "free", 999)
	expectCreate(t, s, "alice", 201, "", "free", 1)
	expectCreate(t, s, "alice", 409, "TOO_MANY_UNPAID_ORDERS", "free", 1)
}

// A create that dies after reserving holds its place until the sweeper
// has given its stock back and the saga budget has passed; then the
// shopper's next create drops it: no allowance leaks.
func TestCrashedCreateLeaksNoAllowance(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{CrashAfterReserve: true, Configure: func(c *config.Config) {
		c.MaxUnpaidPerShopper = 1
		c.SweepSagaBudget = 2 * time.Second
	}})
	seedLimited(t, s, 1, 1)
	crashingCreate(t, s, "alice")
	a, err := s.Store.Allowance(context.Background(), "alice")
	if err != nil || len(a.Holds) != 1 {
		t.Fatalf("after the crash: %+v %v, want one hold", a, err)
	}
	time.Sleep(3 * time.Second) // past the saga budget; the reservation is still live
	if _, err := s.Sweeper.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := stock(t, s, "hot"); n != 100 {
		t.Fatalf("stock %d after the sweep, want 100", n)
	}
	// The next create (this one crashes too, after its claim succeeded)
	// found the dead hold and dropped it.
	crashingCreate(t, s, "alice")
	a, err = s.Store.Allowance(context.Background(), "alice")
	if err != nil || len(a.Holds) != 1 || a.Held("hot") != 1 {
		t.Fatalf("after the second create: %+v %v, want only its own hold", a, err)
	}
}

// crashingCreate sends a create to a CreateOrder that dies mid-request.
func crashingCreate(t *testing.T, s *stack.Stack, user string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL(stack.CreateOrder)+"/", strings.NewReader(`{"items":[{"itemId":"hot","quantity":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.Token(user))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			t.Fatal("a create that crashed answered 201")
		}
	}
}
