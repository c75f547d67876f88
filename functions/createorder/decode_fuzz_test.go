package createorder

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/ordering"
)

// FuzzCreateRequest: whatever the body, decoding and validation either
// accept a request that satisfies every rule, or fail with an InvalidError
// (a 400 with a safe message) — never a panic or another error kind.
func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"items":[{"itemId":"i1","quantity":2}],"paymentTimeoutSeconds":30}`,
		`{"items":[{"itemId":"i1","quantity":2},{"itemId":"i1","quantity":1}]}`,
		`{"items":[{"itemId":"a/b","quantity":1}]}`,
		`{"items":[{"itemId":"i1","quantity":-1}]}`,
		`{"items":[{"itemId":"i1","quantity":1e99}]}`,
		`{"items":[],"x":1}`,
		`{"items":[{"itemId":"i1","quantity":1,"priceCents":1}]}`,
		`{"items":null}`,
		`[]`, `null`, ``, `{`, `{"items":[{"itemId":"` + string(bytes.Repeat([]byte("a"), 200)) + `","quantity":1}]}`,
	} {
		f.Add([]byte(s))
	}
	cfg := ordering.Settings{TimeoutDefault: 15 * time.Minute, TimeoutMin: time.Second, TimeoutMax: 30 * 24 * time.Hour}
	h := New(&ordering.Service{Settings: cfg}, nil, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req Request
		err := httpx.DecodeBytes(bytes.NewReader(body), &req)
		var parsed ordering.CreateRequest
		if err == nil {
			parsed, err = h.Parse("u1", req, "")
		}
		wants, d := parsed.Wants, parsed.Timeout
		if err != nil {
			var inv *domain.InvalidError
			if !errors.As(err, &inv) || inv.Msg == "" {
				t.Fatalf("error %v (%T) is not a user-facing InvalidError", err, err)
			}
			return
		}
		if err := domain.CheckWants(wants); err != nil {
			t.Fatalf("accepted invalid wants %+v: %v", wants, err)
		}
		if d < cfg.TimeoutMin || d > cfg.TimeoutMax {
			t.Fatalf("accepted timeout %v", d)
		}
	})
}
