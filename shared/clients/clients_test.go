package clients

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// peer answers with the given statuses in turn (the last one repeats) and
// counts the attempts.
func peer(t *testing.T, retryAfter string, statuses ...int) (*Client, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		st := statuses[min(i, len(statuses)-1)]
		if st == http.StatusTooManyRequests && retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(st)
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	return New(srv.URL, auth.SecretSigner{Secret: "s"}, time.Second), &n
}

// Which answers a peer call retries: transport-level trouble, 5xx and 429
// (Cloud Run at its instance limit), honouring Retry-After; never another 4xx.
func TestCallRetries(t *testing.T) {
	for _, c := range []struct {
		name       string
		retryAfter string
		statuses   []int
		attempts   int64
		ok         bool
		minTook    time.Duration
	}{
		{"ok", "", []int{200}, 1, true, 0},
		{"503 then ok", "", []int{503, 200}, 2, true, 0},
		{"503 always", "", []int{503}, 3, false, 0},
		{"429 then ok", "", []int{429, 200}, 2, true, 0},
		{"429 always", "", []int{429}, 3, false, 0},
		{"429 with Retry-After 1", "1", []int{429, 200}, 2, true, time.Second},
		{"400 not retried", "", []int{400, 200}, 1, false, 0},
		{"409 not retried", "", []int{409, 200}, 1, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, n := peer(t, c.retryAfter, c.statuses...)
			start := time.Now()
			err := cl.call(context.Background(), http.MethodGet, "/", nil, nil)
			if (err == nil) != c.ok || n.Load() != c.attempts || time.Since(start) < c.minTook {
				t.Fatalf("err %v after %d attempts in %v; want ok=%v after %d, at least %v", err, n.Load(), time.Since(start), c.ok, c.attempts, c.minTook)
			}
			if !c.ok && c.statuses[0] >= 429 && !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("%v is not ErrUnavailable", err)
			}
		})
	}
	if d := retryAfter(time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat), time.Now()); d < time.Second || d > 3*time.Second {
		t.Fatalf("Retry-After as a date: %v", d)
	}
}

// BenchmarkPeerCalls: 40 callers at once (an instance's concurrency) call
// one TLS peer, through net/http's default transport (2 idle connections
// per host) and through NewTransport. It reports calls/s and the TLS
// connections the peer accepted (each a handshake).
func BenchmarkPeerCalls(b *testing.B) {
	for _, tc := range []struct {
		name      string
		transport func() *http.Transport
	}{
		{"default-transport", func() *http.Transport { return http.DefaultTransport.(*http.Transport).Clone() }},
		{"sized-transport", NewTransport},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var conns atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(2 * time.Millisecond) // a peer's own work
				_, _ = w.Write([]byte(`{"ok":true}`))
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.StartTLS()
			defer srv.Close()
			tr := tc.transport()
			tr.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
			cl := New(srv.URL, auth.SecretSigner{Secret: "s"}, 5*time.Second)
			cl.HTTP = &http.Client{Transport: tr}
			const callers = 40
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var next atomic.Int64
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := cl.call(context.Background(), http.MethodGet, "/", nil, nil); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			b.ReportMetric(float64(conns.Load()), "tls-conns")
			tr.CloseIdleConnections()
		})
	}
}
