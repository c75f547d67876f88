package httpx

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// The one mapper: every domain error has its status and contract code, a
// wrapped one too, and no internal text reaches the answer.
func TestBody(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("firestore said: secret detail: %w", domain.ErrUnavailable), 503, "UNAVAILABLE"},
		{fmt.Errorf("reserve: %w", domain.ErrInsufficientStock), 409, "INSUFFICIENT_STOCK"},
		{fmt.Errorf("claim: %w", domain.ErrPurchaseLimit), 409, "PURCHASE_LIMIT"},
		{fmt.Errorf("claim: %w", domain.ErrTooManyUnpaid), 409, "TOO_MANY_UNPAID_ORDERS"},
		{domain.Invalidf("quantity must be positive"), 400, "INVALID_ARGUMENT"},
		{fmt.Errorf("item: %w", domain.ErrUnknownItem), 404, "ITEM_NOT_FOUND"},
		{fmt.Errorf("ct: %w", ErrUnsupportedMedia), 415, "UNSUPPORTED_MEDIA_TYPE"},
		{errors.New("a bug with internal text"), 500, "INTERNAL"},
	} {
		status, body := Body(c.err)
		if status != c.status || body.Error.Code != c.code {
			t.Errorf("%v: %d %s, want %d %s", c.err, status, body.Error.Code, c.status, c.code)
		}
		if strings.Contains(body.Error.Message, "secret detail") || strings.Contains(body.Error.Message, "internal text") {
			t.Errorf("%v: internal text in the answer: %q", c.err, body.Error.Message)
		}
	}
	// An InvalidError's own message is safe to show and is shown.
	if _, body := Body(domain.Invalidf("quantity must be positive")); body.Error.Message != "quantity must be positive" {
		t.Errorf("invalid message %q", body.Error.Message)
	}
}

// Strict JSON bodies: one object, known fields, application/json or none.
func TestDecode(t *testing.T) {
	type v struct {
		A int `json:"a"`
	}
	for _, c := range []struct {
		ct, body string
		want     error
	}{
		{"application/json", `{"a":1}`, nil},
		{"application/json; charset=utf-8", `{"a":1}`, nil},
		{"", `{"a":1}`, nil},
		{"text/plain", `{"a":1}`, ErrUnsupportedMedia},
		{"application/json", `{"a":1,"b":2}`, domain.ErrInvalid},
		{"application/json", `{"a":1}{}`, domain.ErrInvalid},
		{"application/json", `{"a":"x"}`, domain.ErrInvalid},
		{"application/json", ``, domain.ErrInvalid},
		{"application/json", `{"a":` + strings.Repeat("1", MaxBody) + `}`, domain.ErrInvalid},
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
		if c.ct != "" {
			r.Header.Set("Content-Type", c.ct)
		}
		var got v
		err := Decode(httptest.NewRecorder(), r, &got)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%q %.40q: %v, want %v", c.ct, c.body, err, c.want)
		}
	}
}

func TestPathID(t *testing.T) {
	for path, want := range map[string]struct {
		id      string
		ok, bad bool
	}{
		"/":       {"", false, false},
		"/o1":     {"o1", true, false},
		"/a/b":    {"", true, true},
		"/a%2Fb":  {"", true, true},
		"/-start": {"", true, true},
	} {
		id, ok, err := PathID(httptest.NewRequest("GET", path, nil), "orderId")
		if ok != want.ok || (err != nil) != want.bad || (!want.bad && id != want.id) {
			t.Errorf("%s: %q %v %v", path, id, ok, err)
		}
	}
}
