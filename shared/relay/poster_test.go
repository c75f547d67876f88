package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
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

// The hand-written request is a valid binary-mode CloudEvent: the SDK
// decodes every attribute back.
func TestPosterEncodesCloudEvents(t *testing.T) {
	p, err := newPoster("http://127.0.0.1:9/hook?x=1", time.Second, nil, "tok", false)
	if err != nil {
		t.Fatal(err)
	}
	due := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	m := events.Timeout("o-1", due, due.Add(-time.Minute), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	m.ID = "odd id \"%é"
	raw := p.encode(nil, m, "Bearer abc")
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.Path != "/hook" || req.URL.RawQuery != "x=1" || req.Header.Get("Authorization") != "Bearer abc" || req.Header.Get("X-Internal-Token") != "tok" {
		t.Fatalf("request %s %v", req.URL, req.Header)
	}
	e, err := binding.ToEvent(context.Background(), cehttp.NewMessageFromHttpRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.ID() != m.ID || e.Type() != events.TypeTimeoutDue || e.Source() != events.Source || e.Subject() != "o-1" ||
		!e.Time().Equal(m.CreatedAt) || e.Extensions()["traceparent"] != m.Trace || e.Extensions()["internaltoken"] != "tok" {
		t.Fatalf("decoded %s", e)
	}
	id, deadline, err := events.ParseTimeout(e.Data())
	if err != nil || id != "o-1" || !deadline.Equal(due) {
		t.Fatalf("data %q %v %v", id, deadline, err)
	}
}

func TestPosterRefusesControlCharacters(t *testing.T) {
	p, _ := newPoster("http://127.0.0.1:9/", time.Second, nil, "", false)
	m := events.Timeout("o-1", time.Now(), time.Now(), "")
	m.ID = "x\r\nInjected: 1"
	var wc *wconn
	if _, _, err := p.post(context.Background(), &wc, m); err != errHeader {
		t.Fatalf("err = %v", err)
	}
}

// A keep-alive connection the server closed while idle is redialled and
// the post goes through; "Connection: close" answers are honoured.
func TestPosterReconnectsAfterIdleClose(t *testing.T) {
	var conns atomic.Int64
	var closeNext atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if closeNext.Swap(false) {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.IdleTimeout = 30 * time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	p, err := newPoster(srv.URL, time.Second, nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	var wc *wconn
	defer func() { wc.close() }()
	post := func() {
		t.Helper()
		status, _, err := p.post(context.Background(), &wc, events.Timeout("o-1", time.Now(), time.Now(), ""))
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("post: %d %v", status, err)
		}
	}
	post()
	post() // reuses the connection
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for two quick posts, want 1", n)
	}
	time.Sleep(150 * time.Millisecond) // the server closes it while idle
	post()
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after the idle close, want 2", n)
	}
	closeNext.Store(true)
	post()
	if wc != nil {
		t.Fatalf("connection kept after Connection: close")
	}
	post()
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections after Connection: close, want 3", n)
	}
}

// A target that does not answer fails the post after the timeout (at most a
// tenth of it early), also on a connection that sat idle longer than the
// timeout after its last answer: its deadline moves on with each request.
func TestPosterTimesOut(t *testing.T) {
	var n atomic.Int64
	silent := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 3 {
			<-silent
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	defer close(silent)
	const timeout = 300 * time.Millisecond
	p, err := newPoster(srv.URL, timeout, nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	var wc *wconn
	defer func() { wc.close() }()
	m := events.Timeout("o-1", time.Now(), time.Now(), "")
	for i := range 2 {
		if status, _, err := p.post(context.Background(), &wc, m); err != nil || status != 200 {
			t.Fatalf("post %d: %d %v", i, status, err)
		}
		time.Sleep(timeout + 100*time.Millisecond) // idle past the last deadline
	}
	start := time.Now()
	_, _, err = p.post(context.Background(), &wc, m)
	took := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("post to a silent target: %v, want a timeout", err)
	}
	if took < timeout-timeout/10 || took > 3*timeout {
		t.Fatalf("timed out after %v, want about %v", took, timeout)
	}
}

// Through net/http (RELAY_HTTP_CLIENT=net/http) the request is the same
// binary-mode CloudEvent, the answer's status and body come back, and the
// worker's connection is kept alive across requests.
func TestNetHTTPPosterDeliversCloudEvents(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil || e.Validate() != nil || e.Extensions()["internaltoken"] != "tok" || r.Header.Get("Authorization") != "Bearer abc" {
			http.Error(w, "not the event", 400)
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
	p, err := newPoster(srv.URL+"/", time.Second, nil, "tok", true)
	if err != nil {
		t.Fatal(err)
	}
	var wc *wconn
	defer func() { wc.close() }()
	for i := range 5 {
		m := events.Timeout("o-1", time.Now(), time.Now(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		status, detail, err := p.postNetHTTP(context.Background(), &wc, m, "Bearer abc")
		if err != nil || status != 200 {
			t.Fatalf("post %d: %d %q %v", i, status, detail, err)
		}
	}
	status, detail, err := p.postNetHTTP(context.Background(), &wc, events.Timeout("o-refused", time.Now(), time.Now(), ""), "Bearer abc")
	if err != nil || status != 503 || detail != "refused\n" {
		t.Fatalf("refused post: %d %q %v", status, detail, err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 6 requests, want one kept alive", n)
	}
}
