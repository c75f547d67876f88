package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/events"
)

// poster sends binary-mode CloudEvents (CloudEvents HTTP protocol binding
// 1.0: ce-* headers, data as the body) over HTTP/1.1 keep-alive
// connections, one per worker. Writing the request and reading the answer
// on the worker's own connection spares the per-request goroutine hand-offs
// and allocations of net/http's Transport, the largest CPU cost per message
// (docs/benchmarks.md: net/http, tuned, needs twice the CPU). Tests decode
// these requests with the CloudEvents SDK to hold the format to the spec.
type poster struct {
	target  *url.URL
	host    string // host:port to dial
	path    string
	tls     *tls.Config
	timeout time.Duration
	signer  auth.Signer
	token   string
	netHTTP bool // deliver through net/http (a client per worker) instead
}

func newPoster(target string, timeout time.Duration, signer auth.Signer, token string, netHTTP bool) (*poster, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q is not an http(s) URL", target)
	}
	p := &poster{target: u, host: u.Host, path: u.EscapedPath(), timeout: timeout, signer: signer, token: token, netHTTP: netHTTP}
	if p.path == "" {
		p.path = "/"
	}
	if u.RawQuery != "" {
		p.path += "?" + u.RawQuery
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		p.host = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Scheme == "https" {
		p.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	return p, nil
}

// wconn is one worker's connection.
type wconn struct {
	hc       *http.Client // with netHTTP: the worker's own client and its connection
	c        net.Conn
	br       *bufio.Reader
	lastUsed time.Time
	deadline time.Time // the connection's current read/write deadline
	buf      []byte
}

func (p *poster) dial(ctx context.Context) (*wconn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", p.host)
	if err != nil {
		return nil, err
	}
	if p.tls != nil {
		tc := tls.Client(c, p.tls)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	return &wconn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (w *wconn) close() {
	if w != nil && w.c != nil {
		_ = w.c.Close()
	}
	if w != nil && w.hc != nil {
		w.hc.CloseIdleConnections()
	}
}

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

// encode appends the request for m to buf.
func (p *poster) encode(buf []byte, m broker.Message, auth string) []byte {
	h := func(name, value string) {
		buf = append(buf, name...)
		buf = append(buf, ": "...)
		buf = append(buf, value...)
		buf = append(buf, "\r\n"...)
	}
	buf = append(buf, "POST "...)
	buf = append(buf, p.path...)
	buf = append(buf, " HTTP/1.1\r\n"...)
	h("Host", p.target.Host)
	buf = append(buf, "Content-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(m.Data)), 10)
	buf = append(buf, "\r\n"...)
	if !m.CreatedAt.IsZero() {
		buf = append(buf, "ce-time: "...)
		buf = m.CreatedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, "\r\n"...)
	}
	p.headers(m, auth, h)
	buf = append(buf, "\r\n"...)
	return append(buf, m.Data...)
}

// headers gives h every header of m's binary-mode CloudEvent request but
// ce-time (each client writes the time its own way, the own one without
// allocating) and the framing ones (Host, Content-Length).
func (p *poster) headers(m broker.Message, auth string, h func(name, value string)) {
	h("Content-Type", "application/json")
	h("ce-specversion", "1.0")
	h("ce-id", m.ID)
	h("ce-type", m.Type)
	h("ce-source", events.Source)
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
}

const auth0Header = "X-Internal-Token"

// errStale marks a failure on a reused connection before any answer: the
// server had closed it while idle; the post is tried once more on a new one.
var errStale = errors.New("stale keep-alive connection")

// stale reports whether err, on a reused connection, means the server had
// closed it while idle: the write failed, or the connection ended (EOF,
// reset) before any answer. A timeout is not: the server is slow.
func stale(err error, reused bool) bool {
	var ne net.Error
	if !reused || (errors.As(err, &ne) && ne.Timeout()) {
		return false
	}
	return errors.Is(err, errNoAnswer) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// audience is what the target's ID token is minted for: its URL without
// query or trailing slash.
func (p *poster) audience() string {
	u := *p.target
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimRight(u.String(), "/")
}

// post delivers m on *wc (dialled or re-dialled as needed) and returns the
// status and the start of the answer's body.
func (p *poster) post(ctx context.Context, wc **wconn, m broker.Message) (int, string, error) {
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
	if p.netHTTP {
		return p.postNetHTTP(ctx, wc, m, authz)
	}
	for attempt := 0; attempt < 2; attempt++ {
		reused := *wc != nil
		if reused && time.Since((*wc).lastUsed) > 30*time.Second {
			(*wc).close()
			*wc, reused = nil, false
		}
		if *wc == nil {
			c, err := p.dial(ctx)
			if err != nil {
				return 0, "", err
			}
			*wc = c
		}
		status, detail, err := p.once(*wc, m, authz, reused)
		if err == nil {
			if (*wc).c == nil { // the server closed it after answering
				*wc = nil
			} else {
				(*wc).lastUsed = time.Now()
			}
			return status, detail, nil
		}
		(*wc).close()
		*wc = nil
		if !errors.Is(err, errStale) {
			return 0, "", err
		}
	}
	return 0, "", errStale
}

func (p *poster) once(w *wconn, m broker.Message, authz string, reused bool) (int, string, error) {
	// Each request gets the timeout, less at most a tenth of it (up to
	// 100 ms): moving the deadline costs two runtime timer updates, so it
	// moves only when it would move by more than that.
	if d := time.Now().Add(p.timeout); d.Sub(w.deadline) > min(p.timeout/10, 100*time.Millisecond) {
		_ = w.c.SetDeadline(d)
		w.deadline = d
	}
	w.buf = p.encode(w.buf[:0], m, authz)
	if _, err := w.c.Write(w.buf); err != nil {
		if stale(err, reused) {
			return 0, "", errStale
		}
		return 0, "", err
	}
	var detail [512]byte
	status, n, closes, err := readResponse(w.br, detail[:])
	if err != nil {
		if stale(err, reused) {
			return 0, "", errStale
		}
		return 0, "", err
	}
	if closes {
		w.close()
		w.c = nil
	}
	if status/100 == 2 {
		return status, "", nil // the detail is only logged for failures
	}
	return status, strings.TrimSpace(string(detail[:n])), nil
}

// postNetHTTP delivers m through net/http, tuned as well as it goes: a
// client per worker whose Transport keeps that worker's connection alive
// (HTTP/2 where the target offers it), the body from the message's bytes.
// It is the relay's fallback (RELAY_HTTP_CLIENT=net/http: proxies, HTTP/2)
// and what BenchmarkRelayHTTPClient measures the own client against.
func (p *poster) postNetHTTP(ctx context.Context, wc **wconn, m broker.Message, authz string) (int, string, error) {
	if *wc == nil {
		*wc = &wconn{hc: &http.Client{Timeout: p.timeout, Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        2,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     30 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
			DisableCompression:  true,
		}}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.target.String(), bytes.NewReader(m.Data))
	if err != nil {
		return 0, "", err
	}
	p.headers(m, authz, func(name, value string) { req.Header[http.CanonicalHeaderKey(name)] = []string{value} })
	if !m.CreatedAt.IsZero() {
		req.Header["Ce-Time"] = []string{m.CreatedAt.UTC().Format(time.RFC3339Nano)}
	}
	// The message id makes the POST replayable for net/http, which then
	// retries it on a kept-alive connection the server had closed.
	req.Header["Idempotency-Key"] = []string{m.ID}
	resp, err := (*wc).hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var detail [512]byte
	n, _ := io.ReadFull(resp.Body, detail[:])
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	return resp.StatusCode, string(detail[:n]), nil
}
