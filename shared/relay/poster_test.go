package relay

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/ordertimeout/ordertimeout/shared/events"
)

// The hand-written request is a valid binary-mode CloudEvent: the SDK
// decodes every attribute back.
func TestPosterEncodesCloudEvents(t *testing.T) {
	p, err := newPoster("http://127.0.0.1:9/hook?x=1", time.Second, nil, "tok")
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
	p, _ := newPoster("http://127.0.0.1:9/", time.Second, nil, "")
	m := events.Timeout("o-1", time.Now(), time.Now(), "")
	m.ID = "x\r\nInjected: 1"
	var wc *wconn
	if _, _, err := p.post(context.Background(), &wc, m); err != errHeader {
		t.Fatalf("err = %v", err)
	}
}
