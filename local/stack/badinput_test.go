package stack_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// Every bad input gets the contract's error body with the right status and
// changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{NoRelay: true})
	seedBasic(t, s)
	o := create(t, s, "alice", 60, "i1", 1)
	expired := func() []string {
		return []string{"Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.Q2Y2y2VnJ7Yw0pL6gNqFqZ1v6oWm9r5Xb8dU0cT4aZk"}
	}
	alice := s.Bearer("alice")
	co, ds, cc, pay, ht := s.URL(stack.CreateOrder), s.URL(stack.DeductStock), s.URL(stack.ClearCart), s.URL(stack.Pay), s.URL(stack.HandleTimeout)
	ce := func(typ, data string, extra ...string) []string {
		h := []string{"ce-specversion", "1.0", "ce-id", "x1", "ce-source", "t", "ce-type", typ, "ce-internaltoken", s.Cfg.InternalSecret}
		return append(h, extra...)
	}
	huge := `{"items":[{"itemId":"i1","quantity":1}],"pad":"` + strings.Repeat("x", 70<<10) + `"}`
	cases := []struct {
		name    string
		method  string
		url     string
		body    any
		headers []string
		status  int
		code    string
	}{
		{"no token", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}]}`, nil, 401, "UNAUTHENTICATED"},
		{"garbage token", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}]}`, []string{"Authorization", "Bearer nope"}, 401, "UNAUTHENTICATED"},
		{"expired/forged token", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}]}`, expired(), 401, "UNAUTHENTICATED"},
		{"unknown field", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}],"priceCents":1}`, alice, 400, "INVALID_ARGUMENT"},
		{"client price", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1,"priceCents":1}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"wrong type", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":"2"}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"empty items", "POST", co + "/", `{"items":[]}`, alice, 400, "INVALID_ARGUMENT"},
		{"zero quantity", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":0}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"negative quantity", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":-5}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"huge quantity", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":99999999999}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"overflowing quantity", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1e30}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"duplicate items", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1},{"itemId":"i1","quantity":1}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"slash id", "POST", co + "/", `{"items":[{"itemId":"a/b","quantity":1}]}`, alice, 400, "INVALID_ARGUMENT"},
		{"timeout too short", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}],"paymentTimeoutSeconds":0}`, alice, 400, "INVALID_ARGUMENT"},
		{"timeout too long", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}],"paymentTimeoutSeconds":99999999999}`, alice, 400, "INVALID_ARGUMENT"},
		{"oversized body", "POST", co + "/", huge, alice, 400, "INVALID_ARGUMENT"},
		{"two objects", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}]}{}`, alice, 400, "INVALID_ARGUMENT"},
		{"not json", "POST", co + "/", `items=1`, alice, 400, "INVALID_ARGUMENT"},
		{"create as text/plain", "POST", co + "/", `{"items":[{"itemId":"i1","quantity":1}]}`, append([]string{"Content-Type", "text/plain"}, alice...), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"create as a form", "POST", co + "/", `items=1`, append([]string{"Content-Type", "application/x-www-form-urlencoded"}, alice...), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"create as json with charset", "POST", co + "/", `{"items":[]}`, append([]string{"Content-Type", "application/json; charset=utf-8"}, alice...), 400, "INVALID_ARGUMENT"},
		{"pay as text/plain", "POST", s.URL(stack.Pay) + "/", `{"orderId":"x"}`, append([]string{"Content-Type", "text/plain"}, alice...), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"cart as text/plain", "PUT", cc + "/i1", `{"quantity":1}`, append([]string{"Content-Type", "text/plain"}, alice...), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"deduct as text/plain", "POST", ds + "/", `{"orderId":"x","items":[{"itemId":"i1","quantity":1}]}`, append([]string{"Content-Type", "text/plain"}, s.Internal()...), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"order id with slash", "GET", co + "/a/b", nil, alice, 400, "INVALID_ARGUMENT"},
		{"order of unknown id", "GET", co + "/nope", nil, alice, 404, "NOT_FOUND"},
		{"deduct without credential", "POST", ds + "/", `{"orderId":"x","items":[{"itemId":"i1","quantity":1}]}`, nil, 401, "UNAUTHENTICATED"},
		{"deduct with wrong credential", "POST", ds + "/", `{"orderId":"x","items":[{"itemId":"i1","quantity":1}]}`, []string{"X-Internal-Token", "wrong"}, 403, "PERMISSION_DENIED"},
		{"deduct with user token", "POST", ds + "/", `{"orderId":"x","items":[{"itemId":"i1","quantity":1}]}`, alice, 401, "UNAUTHENTICATED"},
		{"restore without credential", "POST", ds + "/restore", `{"orderId":"` + o.OrderID + `"}`, nil, 401, "UNAUTHENTICATED"},
		{"deduct bad order id", "POST", ds + "/", `{"orderId":"../x","items":[{"itemId":"i1","quantity":1}]}`, s.Internal(), 400, "INVALID_ARGUMENT"},
		{"item with slash", "GET", ds + "/a%2Fb", nil, nil, 400, "INVALID_ARGUMENT"},
		{"unknown item", "GET", ds + "/zzz", nil, nil, 404, "NOT_FOUND"},
		{"clear without credential", "POST", cc + "/", `{"userId":"alice","itemIds":["i1"]}`, alice, 401, "UNAUTHENTICATED"},
		{"cart without token", "GET", cc + "/", nil, nil, 401, "UNAUTHENTICATED"},
		{"cart negative line", "PUT", cc + "/i1", `{"quantity":-1}`, alice, 400, "INVALID_ARGUMENT"},
		{"cart missing quantity", "PUT", cc + "/i1", `{}`, alice, 400, "INVALID_ARGUMENT"},
		{"cart unknown item", "PUT", cc + "/nope", `{"quantity":1}`, alice, 404, "NOT_FOUND"},
		{"pay without token", "POST", pay + "/", `{"orderId":"` + o.OrderID + `"}`, nil, 401, "UNAUTHENTICATED"},
		{"pay unknown field", "POST", pay + "/", `{"orderId":"` + o.OrderID + `","amountCents":1}`, alice, 400, "INVALID_ARGUMENT"},
		{"pay other's order", "POST", pay + "/", `{"orderId":"` + o.OrderID + `"}`, s.Bearer("bob"), 404, "NOT_FOUND"},
		{"query without any credential", "GET", pay + "/?bizOrderNo=" + o.OrderID, nil, nil, 401, "UNAUTHENTICATED"},
		{"query bad id", "GET", pay + "/?bizOrderNo=a/b", nil, s.Internal(), 400, "INVALID_ARGUMENT"},
		{"close without credential", "POST", pay + "/close", `{"orderId":"` + o.OrderID + `"}`, alice, 401, "UNAUTHENTICATED"},
		{"event with a wrong internal header", "POST", ht, `{"orderId":"` + o.OrderID + `","deadline":"` + o.Deadline + `"}`, []string{"ce-specversion", "1.0", "ce-id", "x", "ce-source", "t", "ce-type", "orders.payment.check.v1", "X-Internal-Token", "wrong"}, 403, "PERMISSION_DENIED"},
		{"event with a wrong internal token", "POST", ht, `{"orderId":"` + o.OrderID + `","deadline":"` + o.Deadline + `"}`, []string{"ce-specversion", "1.0", "ce-id", "x", "ce-source", "t", "ce-type", "orders.timeout.due.v1", "ce-internaltoken", "wrong"}, 403, "PERMISSION_DENIED"},
		{"payment event for an unknown order", "POST", ht, `{"orderId":"nope","payOrderId":"p1"}`, ce("orders.payment.succeeded.v1", ""), 422, "UNPROCESSABLE"},
		{"check with the internal header", "POST", ht, `{"orderId":"` + o.OrderID + `","deadline":"` + o.Deadline + `"}`, []string{"ce-specversion", "1.0", "ce-id", "x", "ce-source", "t", "ce-type", "orders.payment.check.v1", "X-Internal-Token", s.Cfg.InternalSecret}, 200, ""},
		{"event without token", "POST", ht, `{"orderId":"` + o.OrderID + `","deadline":"` + o.Deadline + `"}`, []string{"ce-specversion", "1.0", "ce-id", "x", "ce-source", "t", "ce-type", "orders.timeout.due.v1"}, 401, "UNAUTHENTICATED"},
		{"event bad data", "POST", ht, `{"orderId":"` + o.OrderID + `"}`, ce("orders.timeout.due.v1", ""), 400, "INVALID_ARGUMENT"},
		{"event bad id", "POST", ht, `{"orderId":"a/b","deadline":"` + o.Deadline + `"}`, ce("orders.timeout.due.v1", ""), 400, "INVALID_ARGUMENT"},
		{"event unknown type", "POST", ht, `{"orderId":"` + o.OrderID + `"}`, ce("orders.other.v1", ""), 400, "INVALID_ARGUMENT"},
		{"event not json", "POST", ht, `nope`, ce("orders.timeout.due.v1", ""), 400, "INVALID_ARGUMENT"},
		{"not an event", "POST", ht, `{"orderId":"` + o.OrderID + `"}`, nil, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"event as GET", "GET", ht, nil, ce("orders.timeout.due.v1", ""), 405, "METHOD_NOT_ALLOWED"},
	}
	for _, c := range cases {
		r := s.Call(c.method, c.url, c.body, c.headers...)
		if r.Status != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, r.Status, c.status, r.Body)
			continue
		}
		if c.code != "" && r.ErrorCode() != c.code {
			t.Errorf("%s: code %q, want %q (%s)", c.name, r.ErrorCode(), c.code, r.Body)
		}
		if c.code != "" && (strings.Contains(string(r.Body), "rpc error") || strings.Contains(string(r.Body), "goroutine")) {
			t.Errorf("%s: internal detail leaked: %s", c.name, r.Body)
		}
	}
	// Nothing changed: stock, the order, the wallet, the cart.
	if stock(t, s, "i1") != 9 || stock(t, s, "i2") != 5 {
		t.Fatalf("stock i1=%d i2=%d", stock(t, s, "i1"), stock(t, s, "i2"))
	}
	if got := getOrder(t, s, "alice", o.OrderID); got.Status != "UNPAID" {
		t.Fatalf("order %s", got.Status)
	}
	if balance(t, s, "alice") != 100_00 || balance(t, s, "bob") != 5_00 {
		t.Fatal("a wallet moved")
	}
	if _, err := s.Store.PayOrder(context.Background(), o.OrderID); err == nil {
		t.Fatal("a pay order appeared")
	}
	docs, err := s.Store.Client().Collection(store.ColOrders).Documents(context.Background()).GetAll()
	if err != nil || len(docs) != 1 {
		t.Fatalf("%d orders (%v), want 1", len(docs), err)
	}
	if r := s.Call(http.MethodGet, s.URL(stack.ClearCart)+"/", nil, alice...); !strings.Contains(string(r.Body), `"itemId":"i2"`) {
		t.Fatalf("cart changed: %s", r.Body)
	}
}
