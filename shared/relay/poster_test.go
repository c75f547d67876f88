package relay

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/ordertimeout/ordertimeout/shared/events"
)

// Every request is a valid binary-mode CloudEvent that the SDK decodes
// back attribute by attribute; the answer's status and the start of its
// body come back; one connection serves a worker's requests.
func TestPosterDeliversCloudEvents(t *testing.T) {
	var conns atomic.Int64
	due := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	const trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil || e.Validate() != nil || r.URL.Path != "/hook" || r.URL.RawQuery != "x=1" || r.Header.Get("X-Internal-Token") != "tok" ||
			e.Type() != events.TypeTimeoutDue || e.Source() != events.Source || !e.Time().Equal(due.Add(-time.Minute)) ||
			e.Extensions()["traceparent"] != trace || e.Extensions()["internaltoken"] != "tok" {
			http.Error(w, "not the event", 400)
			return
		}
		if id, deadline, err := events.ParseTimeout(e.Data()); err != nil || id != e.Subject() || !deadline.Equal(due) {
			http.Error(w, "not the data", 400)
			return
		}
		if e.Subject() == "o-refused" {
			http.Error(w, "refused", 503)
			return
		}
		w.WriteHeader(200)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	p, err := newPoster(srv.URL+"/hook?x=1", time.Second, nil, "tok", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for i := range 5 {
		m := events.Timeout("o-1", due, due.Add(-time.Minute), trace)
		m.ID = "odd id \"%é"
		if status, detail, err := p.post(context.Background(), m); err != nil || status != 200 {
			t.Fatalf("post %d: %d %q %v", i, status, detail, err)
		}
	}
	status, detail, err := p.post(context.Background(), events.Timeout("o-refused", due, due.Add(-time.Minute), trace))
	if err != nil || status != 503 || detail != "refused" {
		t.Fatalf("refused post: %d %q %v", status, detail, err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 6 requests one after another, want one kept alive", n)
	}
}

func TestPosterRefusesControlCharacters(t *testing.T) {
	p, _ := newPoster("http://127.0.0.1:9/", time.Second, nil, "", 1)
	m := events.Timeout("o-1", time.Now(), time.Now(), "")
	m.ID = "x\r\nInjected: 1"
	if _, _, err := p.post(context.Background(), m); err != errHeader {
		t.Fatalf("err = %v", err)
	}
}

// A target that does not answer fails the post after the timeout; a post
// in flight ends when its context does (the relay's drain deadline).
func TestPosterTimesOutAndEndsWithItsContext(t *testing.T) {
	silent := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-silent }))
	defer srv.Close()
	defer close(silent)
	const timeout = 300 * time.Millisecond
	p, err := newPoster(srv.URL, timeout, nil, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	m := events.Timeout("o-1", time.Now(), time.Now(), "")
	start := time.Now()
	_, _, err = p.post(context.Background(), m)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) < timeout {
		t.Fatalf("post to a silent target: %v after %v, want a timeout after %v", err, time.Since(start), timeout)
	}
	p, _ = newPoster(srv.URL, time.Hour, nil, "", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, _, err := p.post(ctx, m); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("post whose context ended: %v after %v", err, time.Since(start))
	}
}

// Answers whose framing is ambiguous are errors (retried by the relay),
// never read one way here and another way by a proxy: a signed
// Content-Length, two that disagree, chunked on HTTP/1.0 is ignored.
func TestPosterRefusesAmbiguousFraming(t *testing.T) {
	for name, answer := range map[string]string{
		"signed length":        "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
		"two lengths":          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"chunked not last":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"unknown coding":       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
		"switching, not asked": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = http.ReadRequest(bufio.NewReader(c))
				_, _ = c.Write([]byte(answer))
				time.Sleep(200 * time.Millisecond)
			}()
			p, _ := newPoster("http://"+l.Addr().String()+"/", 2*time.Second, nil, "", 1)
			if status, _, err := p.post(context.Background(), events.Timeout("o-1", time.Now(), time.Now(), "")); err == nil && status/100 == 2 {
				t.Fatalf("an ambiguous answer was taken as delivered (%d)", status)
			}
		})
	}
}
