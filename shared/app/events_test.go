package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/ordertimeout/ordertimeout/shared/httpx"
)

func postEvent(ctx context.Context, url, id, body string, headers ...string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if id != "" {
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": id, "ce-source": "test", "ce-type": "t.v1"} {
			req.Header.Set(k, v)
		}
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req, nil
}

// Callers that give up at any moment, many at once, never leave a request
// stuck: every answer belongs to its own request, and the server shuts down.
// (The CloudEvents SDK's receive handler fails both: a cancelled request's
// goroutine orphans another request's hand-off.)
func TestEventsSurviveCancelledRequests(t *testing.T) {
	h := Events(func(ctx context.Context, e cloudevents.Event) error {
		n, _ := strconv.Atoi(e.ID())
		time.Sleep(time.Duration(n%3) * 100 * time.Microsecond)
		if n%2 == 1 {
			return cehttp.NewResult(http.StatusConflict, "%s", e.ID())
		}
		return nil
	})
	srv := httptest.NewServer(h)
	closed := false
	t.Cleanup(func() {
		if !closed {
			srv.CloseClientConnections()
		}
	})
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		answered, wrong int
	)
	for i := range 2000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half the callers give up after a random few hundred µs; the
			// others wait up to 20 s (a stuck request fails the test).
			wait := 20 * time.Second
			if i%2 == 0 {
				wait = time.Duration(rand.IntN(400)) * time.Microsecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			id := strconv.Itoa(i)
			req, err := postEvent(ctx, srv.URL, id, `{}`)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				if i%2 == 1 {
					t.Errorf("request %s: %v", id, err)
				}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := http.StatusOK
			if i%2 == 1 {
				want = http.StatusConflict
			}
			mu.Lock()
			defer mu.Unlock()
			answered++
			if resp.StatusCode != want || (want == http.StatusConflict && string(body) != id) {
				wrong++
				t.Errorf("request %s: %d %q, want %d", id, resp.StatusCode, body, want)
			}
		}()
	}
	wg.Wait()
	if answered < 1000 || wrong > 0 {
		t.Fatalf("%d answered, %d wrong", answered, wrong)
	}
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
		closed = true
	case <-time.After(10 * time.Second):
		t.Fatal("the server does not shut down: a request is still blocked")
	}
}

func TestEventsAnswers(t *testing.T) {
	var (
		mu  sync.Mutex
		got cloudevents.Event // the last event the handler saw
	)
	seen := func() cloudevents.Event {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
	h := Events(func(ctx context.Context, e cloudevents.Event) error {
		mu.Lock()
		got = e
		mu.Unlock()
		switch e.Type() {
		case "fail.v1":
			return errors.New("db password is hunter2")
		case "retry.v1":
			return cehttp.NewResult(http.StatusServiceUnavailable, "%s", `{"error":{"code":"UNAVAILABLE","message":"later"}}`)
		}
		return nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	structured := `{"specversion":"1.0","id":"s1","source":"test","type":"t.v1","datacontenttype":"application/json","data":{"orderId":"o1"}}`
	cases := []struct {
		name, method, id, body string
		headers                []string
		status                 int
		code, message          string // message: a part of the error's message
	}{
		{"binary", "POST", "b1", `{"orderId":"o1"}`, nil, 200, "", ""},
		{"structured", "POST", "", structured, []string{"Content-Type", "application/cloudevents+json"}, 200, "", ""},
		{"not an event", "POST", "", `{"orderId":"o1"}`, nil, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"no source", "POST", "b2", `{}`, []string{"ce-source", ""}, 400, "INVALID_ARGUMENT", "source"},
		{"bad structured", "POST", "", `{"specversion":`, []string{"Content-Type", "application/cloudevents+json"}, 400, "INVALID_ARGUMENT", ""},
		{"too large", "POST", "b3", `"` + strings.Repeat("x", httpx.MaxBody) + `"`, nil, 400, "INVALID_ARGUMENT", "body larger than"},
		{"GET", "GET", "b4", ``, nil, 405, "METHOD_NOT_ALLOWED", ""},
		{"handler error", "POST", "b5", `{}`, []string{"ce-type", "fail.v1"}, 500, "INTERNAL", ""},
		{"handler result", "POST", "b6", `{}`, []string{"ce-type", "retry.v1"}, 503, "UNAVAILABLE", ""},
	}
	for _, c := range cases {
		mu.Lock()
		got = cloudevents.Event{}
		mu.Unlock()
		req, err := postEvent(context.Background(), srv.URL, c.id, c.body, c.headers...)
		if err != nil {
			t.Fatal(err)
		}
		req.Method = c.method
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.status, body)
			continue
		}
		if c.status == 200 {
			if e := seen(); e.ID() == "" || string(e.Data()) != `{"orderId":"o1"}` {
				t.Errorf("%s: the handler saw %v", c.name, e)
			}
			continue
		}
		var eb httpx.ErrorBody
		if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != c.code || eb.Error.Message == "" {
			t.Errorf("%s: body %s, want the contract's error with code %s", c.name, body, c.code)
		}
		if strings.Contains(string(body), "hunter2") {
			t.Errorf("%s: internal detail leaked: %s", c.name, body)
		}
		if !strings.Contains(eb.Error.Message, c.message) {
			t.Errorf("%s: message %q, want it to say %q", c.name, eb.Error.Message, c.message)
		}
		if c.status < 500 && seen().ID() != "" {
			t.Errorf("%s: a refused request reached the handler", c.name)
		}
	}
}
