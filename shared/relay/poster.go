package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
)

// poster sends binary-mode CloudEvents (CloudEvents HTTP protocol binding
// 1.0: ce-* headers, data as the body) through net/http: one client for
// every worker, whose transport keeps a connection per worker alive and
// speaks HTTP/2 where the target offers it (Cloud Run does, over TLS).
// net/http's strict framing and its context handling are worth its CPU
// (docs/benchmarks.md: the relay's own HTTP/1.1 client it replaced needed
// less than half): a request ends with its context, so a drain deadline
// ends every delivery still in flight. Tests decode these requests with
// the CloudEvents SDK to hold the format to the spec.
type poster struct {
	target *url.URL
	signer auth.Signer
	token  string
	client *http.Client
}

func newPoster(target string, timeout time.Duration, signer auth.Signer, token string, workers int) (*poster, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q is not an http(s) URL", target)
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        max(workers, 2),
		MaxIdleConnsPerHost: max(workers, 2),
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		DisableCompression:  true,
	}
	return &poster{target: u, signer: signer, token: token, client: &http.Client{Timeout: timeout, Transport: tr}}, nil
}

// close drops the idle connections.
func (p *poster) close() { p.client.CloseIdleConnections() }

// errHeader refuses a value that cannot travel in an HTTP header (control
// characters); such a message is malformed and is dead-lettered. Our ids
// never contain them.
var errHeader = errors.New("attribute holds a control character")

func headerOK(vals ...string) error {
	for _, s := range vals {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < ' ' || c == 0x7f {
				return errHeader
			}
		}
	}
	return nil
}

// headers gives h every header of m's binary-mode CloudEvent request.
func (p *poster) headers(m broker.Message, auth string, h func(name, value string)) {
	h("Content-Type", "application/json")
	h("ce-specversion", "1.0")
	h("ce-id", m.ID)
	h("ce-type", m.Type)
	h("ce-source", events.Source)
	if !m.CreatedAt.IsZero() {
		h("ce-time", m.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	if m.Subject != "" {
		h("ce-subject", m.Subject)
	}
	if m.Trace != "" {
		h("ce-traceparent", m.Trace)
		h("traceparent", m.Trace)
	}
	if p.token != "" {
		h("ce-internaltoken", p.token)
		h(auth0Header, p.token)
	}
	if auth != "" {
		h("Authorization", auth)
	}
	// The message id makes the POST replayable for net/http, which then
	// retries it on a kept-alive connection the server had closed.
	h("Idempotency-Key", m.ID)
}

const auth0Header = "X-Internal-Token"

// audience is what the target's ID token is minted for: its URL without
// query or trailing slash.
func (p *poster) audience() string {
	u := *p.target
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimRight(u.String(), "/")
}

// post delivers m and returns the status and the start of the answer's
// body (for failures). It ends with ctx.
func (p *poster) post(ctx context.Context, m broker.Message) (int, string, error) {
	if err := headerOK(m.ID, m.Type, m.Subject, m.Trace); err != nil {
		return 0, "", err
	}
	authz := ""
	if p.signer != nil {
		if _, ok := p.signer.(auth.SecretSigner); !ok {
			r := &http.Request{URL: p.target, Header: http.Header{}}
			if err := p.signer.Sign(r, p.audience()); err != nil {
				return 0, "", err
			}
			authz = r.Header.Get("Authorization")
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.target.String(), bytes.NewReader(m.Data))
	if err != nil {
		return 0, "", err
	}
	p.headers(m, authz, func(name, value string) { req.Header[http.CanonicalHeaderKey(name)] = []string{value} })
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var detail [512]byte
	n, _ := io.ReadFull(resp.Body, detail[:])
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, "", nil // the detail is only logged for failures
	}
	return resp.StatusCode, strings.TrimSpace(string(detail[:n])), nil
}
