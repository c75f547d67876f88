package stack_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/shared/domain"
)

func cancelOrder(s *stack.Stack, user, id string) stack.Response {
	return s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/"+id+"/cancel", nil, s.Bearer(user)...)
}

// The shopper gives up an unpaid order: CANCELLED with USER_CANCELLED, the
// pay order CLOSED (no payment lands any more), the stock back once; a
// second cancel returns it unchanged; a paid order cannot be cancelled;
// only the owner may cancel; the deadline that comes later does nothing.
func TestShopperCancel(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	seedBasic(t, s)
	o := create(t, s, "alice", 3, "i1", 2)
	if got := stock(t, s, "i1"); got != 8 {
		t.Fatalf("stock %d after create", got)
	}
	for _, c := range []struct {
		name, user, id string
		status         int
		code           string
	}{
		{"another user's order", "bob", o.OrderID, 404, "NOT_FOUND"},
		{"unknown order", "alice", "ozzz", 404, "NOT_FOUND"},
		{"bad id", "alice", "a%2Fb", 400, "INVALID_ARGUMENT"},
	} {
		if r := cancelOrder(s, c.user, c.id); r.Status != c.status || r.ErrorCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.Status, r.Body, c.status, c.code)
		}
	}
	if r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/"+o.OrderID+"/cancel", nil); r.Status != 401 {
		t.Errorf("cancel without a token: %d", r.Status)
	}
	r := cancelOrder(s, "alice", o.OrderID)
	var got createorder.OrderJSON
	if r.Status != 200 || r.JSON(&got) != nil || got.Status != "CANCELLED" || got.CancelReason != domain.CancelUserCancelled || got.CancelledAt == "" {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if n := stock(t, s, "i1"); n != 10 {
		t.Fatalf("stock %d after cancel, want 10", n)
	}
	var again createorder.OrderJSON
	if r := cancelOrder(s, "alice", o.OrderID); r.Status != 200 || r.JSON(&again) != nil || again.CancelledAt != got.CancelledAt {
		t.Fatalf("second cancel: %d %s", r.Status, r.Body)
	}
	q := s.Call(http.MethodGet, s.URL(stack.Pay)+"/?bizOrderNo="+o.OrderID, nil, s.Internal()...)
	if !strings.Contains(string(q.Body), `"status":"CLOSED"`) {
		t.Fatalf("pay order after cancel: %d %s", q.Status, q.Body)
	}
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer("alice")...); r.Status != 409 {
		t.Fatalf("pay after cancel: %d %s", r.Status, r.Body)
	}
	paid := create(t, s, "alice", 60, "i2", 1)
	if r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": paid.OrderID}, s.Bearer("alice")...); r.Status != 200 {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	if r := cancelOrder(s, "alice", paid.OrderID); r.Status != 409 || r.ErrorCode() != "ORDER_PAID" {
		t.Fatalf("cancel of a paid order: %d %s", r.Status, r.Body)
	}
	time.Sleep(4 * time.Second) // the first order's deadline passes: its timer finds it cancelled
	if o := getOrder(t, s, "alice", o.OrderID); o.CancelReason != domain.CancelUserCancelled {
		t.Fatalf("after the deadline: %+v", o)
	}
	checkInvariants(t, s, basicInitial)
}

// 240 orders whose payment, two cancels and deadline all fire at the same
// moment: each order ends PAID or CANCELLED exactly once, every cancel that
// answered 200 left it CANCELLED, every payment that answered 200 left it
// PAID, and money and stock are conserved.
func TestCancelRacesPayAndDeadline(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{})
	init := bigSeed(t, s, 40, 20)
	orders := createMany(t, s, 240, 40, 20, 3, 12)
	var (
		wg                          sync.WaitGroup
		payOK, cancelOK, cancelPaid atomic.Int64
		mu                          sync.Mutex
		paidByAnswer                = map[string]bool{}
		cancelledByAnswer           = map[string]bool{}
	)
	for _, o := range orders {
		deadline, err := time.Parse(time.RFC3339Nano, o.Deadline)
		if err != nil {
			t.Fatal(err)
		}
		// Within 150 ms before to 50 ms after the deadline: every pair of
		// the three meets in some orders.
		at := func() { time.Sleep(time.Until(deadline) + time.Duration(rand.IntN(200)-150)*time.Millisecond) }
		wg.Add(3)
		go func() {
			defer wg.Done()
			at()
			r := s.Call(http.MethodPost, s.URL(stack.Pay)+"/", map[string]string{"orderId": o.OrderID}, s.Bearer(o.UserID)...)
			switch r.Status {
			case 200:
				payOK.Add(1)
				mu.Lock()
				paidByAnswer[o.OrderID] = true
				mu.Unlock()
			case 409:
			default:
				t.Errorf("pay %s: %d %s", o.OrderID, r.Status, r.Body)
			}
		}()
		for range 2 {
			go func() {
				defer wg.Done()
				at()
				r := cancelOrder(s, o.UserID, o.OrderID)
				switch {
				case r.Status == 200:
					cancelOK.Add(1)
					mu.Lock()
					cancelledByAnswer[o.OrderID] = true
					mu.Unlock()
				case r.Status == 409 && r.ErrorCode() == "ORDER_PAID":
					cancelPaid.Add(1)
				default:
					t.Errorf("cancel %s: %d %s", o.OrderID, r.Status, r.Body)
				}
			}()
		}
	}
	wg.Wait()
	quiesce(t, s, 60*time.Second)
	res := checkInvariants(t, s, init)
	all, _ := ordersIn(t, s, domain.OrderPaid)
	reasons := map[string]int{}
	for _, o := range all {
		switch {
		case o.Status == domain.OrderPaid && cancelledByAnswer[o.ID]:
			t.Errorf("%s: a cancel answered 200 but the order is PAID", o.ID)
		case o.Status == domain.OrderCancelled && paidByAnswer[o.ID]:
			t.Errorf("%s: a payment answered 200 but the order is CANCELLED", o.ID)
		case o.Status == domain.OrderCancelled:
			reasons[o.CancelReason]++
		}
	}
	if int64(res.Orders[domain.OrderPaid]) != payOK.Load() {
		t.Fatalf("%d PAID orders but %d successful payments", res.Orders[domain.OrderPaid], payOK.Load())
	}
	t.Logf("%d paid; cancelled by reason %v; cancels: %d answered 200, %d ORDER_PAID; %s", payOK.Load(), reasons, cancelOK.Load(), cancelPaid.Load(), res)
}

func listOrders(t *testing.T, s *stack.Stack, user, query string) (createorder.ListJSON, stack.Response) {
	t.Helper()
	r := s.Call(http.MethodGet, s.URL(stack.CreateOrder)+"/"+query, nil, s.Bearer(user)...)
	var l createorder.ListJSON
	if r.Status == 200 {
		if err := r.JSON(&l); err != nil {
			t.Fatal(err)
		}
	}
	return l, r
}

// Listing my orders: newest first, only mine, filtered by status, paged by
// a cursor that neither repeats nor skips an order while others are being
// created; bad queries are 400.
func TestListMyOrders(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	bigSeed(t, s, 10, 2)
	var mine []string
	for i := range 25 {
		o := create(t, s, "user000", 600, fmt.Sprintf("item%03d", i%10), 1)
		mine = append(mine, o.OrderID)
		create(t, s, "user001", 600, fmt.Sprintf("item%03d", i%10), 1)
	}
	for _, id := range mine[:5] {
		if r := cancelOrder(s, "user000", id); r.Status != 200 {
			t.Fatalf("cancel: %d %s", r.Status, r.Body)
		}
	}
	// Page through in sevens while more of both users' orders are created.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var extra atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			create(t, s, fmt.Sprintf("user%03d", i%2), 600, "item000", 1)
			if i%2 == 0 {
				extra.Add(1)
			}
		}
	}()
	seen := map[string]bool{}
	var order []createorder.OrderJSON
	token := ""
	for pages := 0; ; pages++ {
		q := "?pageSize=7"
		if token != "" {
			q += "&pageToken=" + url.QueryEscape(token)
		}
		l, r := listOrders(t, s, "user000", q)
		if r.Status != 200 || len(l.Orders) > 7 {
			t.Fatalf("page %d: %d %s", pages, r.Status, r.Body)
		}
		for _, o := range l.Orders {
			if o.UserID != "user000" {
				t.Fatalf("another user's order listed: %+v", o)
			}
			if seen[o.OrderID] {
				t.Fatalf("order %s listed twice", o.OrderID)
			}
			seen[o.OrderID] = true
			order = append(order, o)
		}
		if l.NextPageToken == "" {
			break
		}
		token = l.NextPageToken
	}
	close(stop)
	wg.Wait()
	for _, id := range mine {
		if !seen[id] {
			t.Fatalf("order %s, created before the listing, was skipped", id)
		}
	}
	for i := 1; i < len(order); i++ {
		if order[i].CreatedAt > order[i-1].CreatedAt {
			t.Fatalf("not newest first at %d: %s after %s", i, order[i].CreatedAt, order[i-1].CreatedAt)
		}
	}
	if first, _ := listOrders(t, s, "user000", ""); len(first.Orders) != 20 || first.NextPageToken == "" {
		t.Fatalf("default page: %d orders, next %q", len(first.Orders), first.NextPageToken)
	}
	cancelled, _ := listOrders(t, s, "user000", "?status=CANCELLED&pageSize=100")
	if len(cancelled.Orders) != 5 || cancelled.NextPageToken != "" {
		t.Fatalf("CANCELLED: %d orders, next %q", len(cancelled.Orders), cancelled.NextPageToken)
	}
	for _, o := range cancelled.Orders {
		if o.Status != "CANCELLED" {
			t.Fatalf("status filter let through %+v", o)
		}
	}
	if none, _ := listOrders(t, s, "nobody", ""); none.Orders == nil || len(none.Orders) != 0 || none.NextPageToken != "" {
		t.Fatalf("a user with no orders: %+v", none)
	}
	for _, q := range []string{"?status=PENDING", "?pageSize=0", "?pageSize=101", "?pageSize=x", "?pageToken=garbage", "?colour=red", "?status=PAID&status=UNPAID"} {
		if _, r := listOrders(t, s, "user000", q); r.Status != 400 || r.ErrorCode() != "INVALID_ARGUMENT" {
			t.Errorf("%s: %d %s, want 400", q, r.Status, r.Body)
		}
	}
	if r := s.Call(http.MethodGet, s.URL(stack.CreateOrder)+"/", nil); r.Status != 401 {
		t.Errorf("list without a token: %d", r.Status)
	}
	t.Logf("listed %d orders in pages of 7 while %d more were created", len(order), extra.Load())
}
