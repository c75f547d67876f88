package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
)

// Events serves fn as a CloudEvent receiver over HTTP: binary or structured
// mode, one event per POST. fn answers the way a functions-framework
// CloudEvent function does: nil is 200, a *cehttp.Result is its status with
// its text (the contract's JSON error body) as the body, any other error is
// 500 INTERNAL.
//
// Each request is decoded and answered in its own goroutine. The CloudEvents
// SDK's receive handler (which functions-framework-go wraps every CloudEvent
// function in) hands requests to a shared unbuffered channel instead; when a
// caller disconnects at the wrong moment a request is left blocked there
// for good, and the server can no longer shut down (cloudevents/sdk-go
// issues 1224 and 1332). The relay cancels requests on its timeout and on
// shutdown, so HandleTimeout is served by this instead.
func Events(fn func(context.Context, cloudevents.Event) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			httpx.MethodNotAllowed(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxBody)
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err == nil {
			err = e.Validate()
		}
		if err != nil {
			refuseEvent(w, r, err)
			return
		}
		err = fn(r.Context(), *e)
		var res *cehttp.Result
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.As(err, &res) && res.StatusCode >= 200 && res.StatusCode < 600:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(res.StatusCode)
			_, _ = fmt.Fprintf(w, res.Format, res.Args...)
		default:
			httpx.Error(w, r, err, "event_id", e.ID())
		}
	})
}

// refuseEvent answers a request that holds no valid CloudEvent; it never
// reaches the handler. The SDK's error text goes to the log, not the caller.
func refuseEvent(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		err = domain.Invalidf("body larger than %d bytes", httpx.MaxBody)
	case errors.Is(err, binding.ErrUnknownEncoding):
		err = fmt.Errorf("not a CloudEvent: send ce-* headers (binary mode) or Content-Type application/cloudevents+json (structured mode): %w", httpx.ErrUnsupportedMedia)
	default:
		// The answer carries the fixed message; the log, the SDK's detail.
		err = fmt.Errorf("%w: %v", domain.Invalidf("not a valid CloudEvent (binary or structured mode, CloudEvents 1.0: id, source, specversion and type are required)"), err)
	}
	httpx.Error(w, r, err)
}
