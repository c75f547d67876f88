package handletimeout

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// idTokens stands in for auth.GoogleIDToken: it accepts one bearer token.
type idTokens struct{ want string }

func (c idTokens) Check(r *http.Request) error {
	switch r.Header.Get("Authorization") {
	case "":
		return fmt.Errorf("no ID token: %w", domain.ErrUnauthenticated)
	case "Bearer " + c.want:
		return nil
	}
	return fmt.Errorf("caller not allowed: %w", domain.ErrForbidden)
}

// In google mode HandleTimeout checks the caller's ID token in code, not
// by IAM alone: no token is 401, another caller's 403 (both retried by
// the relay, never dead-lettered), and only the relay's reaches the event.
func TestGoogleModeChecksTheCaller(t *testing.T) {
	cfg := config.Config{InternalMode: config.InternalGoogle}
	h := New(&timeout.Decider{}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), idTokens{want: "relay"}).HTTPHandler()
	for _, c := range []struct {
		name, auth string
		status     int
	}{
		{"no token", "", 401},
		{"another caller", "Bearer someone-else", 403},
		// Reaches the event: an unknown type is the event's fault.
		{"the relay", "Bearer relay", 400},
	} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`))
		req.Header.Set("ce-id", "1")
		req.Header.Set("ce-specversion", "1.0")
		req.Header.Set("ce-type", "orders.unknown.v1")
		req.Header.Set("ce-source", "//test")
		req.Header.Set("Content-Type", "application/json")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, w.Code, w.Body, c.status)
		}
	}
}
