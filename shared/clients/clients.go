// Package clients calls the other functions over HTTP, the way the original
// services called each other with OpenFeign: every call has a timeout, and
// only idempotent calls are retried (all calls here are idempotent per order
// id, so all are retried on transport errors and 5xx).
package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// Client is a JSON client for one function's base URL.
type Client struct {
	Base     string
	HTTP     *http.Client
	Signer   auth.Signer
	Timeout  time.Duration // per attempt
	Attempts int
}

// New builds a client with a per-attempt timeout and 3 attempts, over a
// transport of its own sized for an instance's concurrency.
func New(base string, signer auth.Signer, timeout time.Duration) *Client {
	return &Client{Base: base, HTTP: &http.Client{Transport: NewTransport()}, Signer: signer, Timeout: timeout, Attempts: 3}
}

// MaxIdlePerPeer is how many idle connections a client keeps to its peer:
// an instance serves up to 40 requests at once (terraform's
// max_instance_request_concurrency), each calling a peer, and net/http's
// default of 2 would make most of those calls open (and handshake) a new
// connection under load.
const MaxIdlePerPeer = 64

// NewTransport returns net/http's default transport with idle connections
// kept for MaxIdlePerPeer concurrent calls to one host.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * MaxIdlePerPeer
	t.MaxIdleConnsPerHost = MaxIdlePerPeer
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// StatusError is a non-2xx answer that is not retried.
type StatusError struct {
	Status  int
	Code    string
	Message string // the peer's public message
	// RetryAfter is a 429's or 503's Retry-After (0: none given).
	RetryAfter time.Duration
}

// maxRetryAfter caps how long a peer's Retry-After is honoured.
const maxRetryAfter = 10 * time.Second

func (e *StatusError) Error() string { return fmt.Sprintf("status %d %s", e.Status, e.Code) }

// call sends method path with in as JSON and decodes a 2xx answer into out.
// 4xx answers become domain errors by their contract code; transport errors,
// 5xx and 429 (a peer at its instance limit) are retried with jittered
// backoff, waiting at least a Retry-After the peer gave, and end as
// domain.ErrUnavailable.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	var last error
	backoff := 50 * time.Millisecond
	for attempt := 1; attempt <= max(c.Attempts, 1); attempt++ {
		err := c.once(ctx, method, path, body, out)
		var se *StatusError
		isStatus := errors.As(err, &se)
		if err == nil || !errors.Is(err, domain.ErrUnavailable) || isStatus && se.Status < 500 && se.Status != http.StatusTooManyRequests {
			return err
		}
		last = err
		if attempt == c.Attempts {
			break
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		if isStatus && se.RetryAfter > wait {
			wait = min(se.RetryAfter, maxRetryAfter)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s %s%s: %w (last: %w)", domain.ErrUnavailable, method, c.Base, path, ctx.Err(), last)
		case <-time.After(wait):
		}
		backoff *= 2
	}
	return last
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	ctx, span := telemetry.Tracer().Start(ctx, "call "+method+" "+c.Base+path, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if tp := telemetry.Inject(ctx); tp != "" {
		req.Header.Set("traceparent", tp)
	}
	if err := c.Signer.Sign(req, c.Base); err != nil {
		return fmt.Errorf("%w: sign %s: %w", domain.ErrUnavailable, c.Base, err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s%s: %w", domain.ErrUnavailable, method, c.Base, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: read %s%s: %w", domain.ErrUnavailable, c.Base, path, err)
	}
	if resp.StatusCode/100 == 2 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%w: decode answer of %s%s: %w", domain.ErrUnavailable, c.Base, path, err)
		}
		return nil
	}
	var eb httpx.ErrorBody
	_ = json.Unmarshal(data, &eb)
	se := &StatusError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%w: %s %s%s: %w", domain.ErrUnavailable, method, c.Base, path, se)
	}
	var kind error
	switch eb.Error.Code {
	case "ITEM_NOT_FOUND":
		kind = domain.ErrUnknownItem
	case "NOT_FOUND":
		kind = domain.ErrNotFound
	case "INSUFFICIENT_STOCK":
		kind = domain.ErrInsufficientStock
	case "ORDER_CLOSED":
		kind = domain.ErrOrderClosed
	case "INSUFFICIENT_BALANCE":
		kind = domain.ErrInsufficientBalance
	default:
		// 400/401/403 from a peer is our bug or misconfiguration, not the
		// user's: report it as a dependency failure.
		kind = domain.ErrUnavailable
	}
	return fmt.Errorf("%s %s%s: %w: %w", method, c.Base, path, kind, se)
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
