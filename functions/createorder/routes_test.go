package createorder

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/ordering"
)

// The routes are declared as ServeMux patterns; what no route takes is
// the contract's 405 body. Without credentials a route that exists answers
// 401 before doing anything, so the status says which route was taken.
func TestRoutes(t *testing.T) {
	h := New(&ordering.Service{}, auth.HS256{Secret: []byte("0123456789abcdef0123")}, auth.SharedSecret{Secret: "0123456789abcdef0123"})
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/", 401},
		{"GET", "/", 401},
		{"GET", "/o1", 401},
		{"POST", "/o1/cancel", 401},
		{"POST", "/extend", 401},
		{"PUT", "/", 405},
		{"DELETE", "/o1", 405},
		{"POST", "/o1", 405},
		{"PATCH", "/o1/cancel", 405},
		{"POST", "/o1/cancel/x", 405},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, strings.NewReader("{}")))
		if w.Code != c.status {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, w.Code, w.Body, c.status)
		}
		if w.Code == http.StatusMethodNotAllowed && !strings.Contains(w.Body.String(), `"code":"METHOD_NOT_ALLOWED"`) {
			t.Errorf("%s %s: 405 without the contract's body: %s", c.method, c.path, w.Body)
		}
	}
}
