// Package auth verifies who calls: shoppers with a Bearer JWT whose sub is
// the user id, and internal callers (other functions, the relay, the
// scheduler) with a shared secret locally or a Google-signed ID token in
// production. It also gives outbound calls their internal credential.
package auth

import (
	"context"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// InternalHeader carries the shared secret of internal callers in local and
// test mode.
const InternalHeader = "X-Internal-Token"

// Users verifies a shopper's bearer token and returns the user id.
type Users interface {
	Verify(ctx context.Context, token string) (userID string, err error)
}

// Bearer returns the token of an "Authorization: Bearer" header, or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// User authenticates r's shopper: "Authorization: Bearer <token>", the
// token verified by v, its sub a valid id.
func User(ctx context.Context, v Users, r *http.Request) (string, error) {
	tok := Bearer(r)
	if tok == "" {
		return "", fmt.Errorf("no bearer token: %w", domain.ErrUnauthenticated)
	}
	uid, err := v.Verify(ctx, tok)
	if err != nil {
		return "", fmt.Errorf("%w: %w", domain.ErrUnauthenticated, err)
	}
	if !domain.ValidID(uid) {
		return "", fmt.Errorf("token sub %q is not a valid user id: %w", uid, domain.ErrUnauthenticated)
	}
	return uid, nil
}

// HS256 verifies HS256 tokens signed with a shared secret (local/test mode).
type HS256 struct{ Secret []byte }

// Verify checks signature, algorithm and expiry (required), and returns sub.
func (h HS256) Verify(_ context.Context, token string) (string, error) {
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return h.Secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second))
	if err != nil {
		return "", err
	}
	return claims.Subject, nil
}

// SignHS256 mints a token for sub valid for ttl (tools and tests).
func SignHS256(secret []byte, sub string, ttl time.Duration) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString(secret)
}

// FirebaseCertsURL publishes the keys that sign Firebase Auth / Identity
// Platform ID tokens.
const FirebaseCertsURL = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"

// keyFetchTimeout bounds one fetch of signing keys: a key server that does
// not answer makes a request fail, never hang.
const keyFetchTimeout = 5 * time.Second

// staleKeys is how long signing keys stay usable past their max-age while
// the key server cannot be reached (Google rotates them over days, and
// publishes each new key well before it signs with it).
const staleKeys = 24 * time.Hour

// Firebase verifies Firebase Auth / Identity Platform ID tokens: RS256, kid
// from the published certificates, iss https://securetoken.google.com/<project>,
// aud <project>, iat and exp (with a minute of leeway), a non-empty sub; the
// user id is sub. The signature and claims are checked by golang-jwt; the
// keys are fetched and cached here (max-age of the key server's answer).
//
// One refresh runs at a time, on a context of its own, and no request
// waits for it while the cache has the token's key: keys past their
// max-age are served for staleKeys while the refresh runs in the
// background. A failed refresh is tried again after a backoff (1 s
// doubling to a minute), so a slow or failing key server never puts
// shoppers in line behind it. Only a request whose key the cache lacks (a
// cold instance, a new kid: at most once a minute) waits, for the one
// refresh in flight and at most as long as its own context.
type Firebase struct {
	Project  string
	Client   *http.Client // default: a client with keyFetchTimeout
	CertsURL string       // default FirebaseCertsURL
	Now      func() time.Time

	mu       sync.Mutex
	keys     map[string]*rsa.PublicKey
	expires  time.Time
	lastMiss time.Time
	refresh  *keyRefresh // in flight, if any
	failures int
	retryAt  time.Time // no refresh before this after failures
}

// keyRefresh is one fetch of the signing keys that requests may wait for.
type keyRefresh struct {
	done chan struct{}
	err  error
}

func (f *Firebase) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Verify checks the token and returns sub.
func (f *Firebase) Verify(ctx context.Context, token string) (string, error) {
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return f.key(ctx, kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithIssuer("https://securetoken.google.com/"+f.Project), jwt.WithAudience(f.Project),
		jwt.WithLeeway(time.Minute), jwt.WithTimeFunc(f.now))
	if err != nil {
		return "", err
	}
	if claims.Subject == "" {
		return "", fmt.Errorf("token has no sub")
	}
	return claims.Subject, nil
}

// key returns the public key kid.
func (f *Firebase) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	f.mu.Lock()
	now := f.now()
	fresh := f.keys != nil && now.Before(f.expires)
	usable := f.keys != nil && now.Before(f.expires.Add(staleKeys))
	if k, ok := f.keys[kid]; ok && usable {
		if !fresh {
			f.startRefreshLocked(now) // in the background; this request goes on
		}
		f.mu.Unlock()
		return k, nil
	}
	if fresh && now.Sub(f.lastMiss) < time.Minute {
		f.mu.Unlock()
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	if fresh {
		f.lastMiss = now // a new key may have been published: look once
	}
	r := f.startRefreshLocked(now)
	f.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("no signing key %q: the key server is failing; next try after a backoff", kid)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for signing keys: %w", ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if k, ok := f.keys[kid]; ok && f.now().Before(f.expires.Add(staleKeys)) {
		return k, nil
	}
	if r.err != nil {
		return nil, r.err
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// startRefreshLocked starts a refresh unless one is in flight (which it
// returns) or failures hold the next one back (nil).
func (f *Firebase) startRefreshLocked(now time.Time) *keyRefresh {
	if f.refresh != nil {
		return f.refresh
	}
	if now.Before(f.retryAt) {
		return nil
	}
	r := &keyRefresh{done: make(chan struct{})}
	f.refresh = r
	go func() {
		keys, maxAge, err := f.fetch(context.Background())
		f.mu.Lock()
		now := f.now()
		if err == nil {
			f.keys, f.expires, f.failures, f.retryAt = keys, now.Add(maxAge), 0, time.Time{}
		} else {
			f.failures++
			f.retryAt = now.Add(min(time.Second<<min(f.failures-1, 6), time.Minute))
		}
		f.refresh, r.err = nil, err
		f.mu.Unlock()
		close(r.done)
	}()
	return r
}

func (f *Firebase) fetch(ctx context.Context) (map[string]*rsa.PublicKey, time.Duration, error) {
	c := f.Client
	if c == nil {
		c = &http.Client{Timeout: keyFetchTimeout}
	}
	u := f.CertsURL
	if u == "" {
		u = FirebaseCertsURL
	}
	ctx, cancel := context.WithTimeout(ctx, keyFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch signing keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch signing keys: status %d", resp.StatusCode)
	}
	var pems map[string]string
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&pems); err != nil {
		return nil, 0, fmt.Errorf("decode signing keys: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey, len(pems))
	for kid, p := range pems {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		if k, ok := cert.PublicKey.(*rsa.PublicKey); ok {
			keys[kid] = k
		}
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("the key server published no usable key")
	}
	return keys, maxAge(resp.Header.Get("Cache-Control")), nil
}

// maxAge reads Cache-Control's max-age: between a minute and a day, an hour
// when absent.
func maxAge(cc string) time.Duration {
	for _, part := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return min(max(time.Duration(n)*time.Second, time.Minute), 24*time.Hour)
			}
		}
	}
	return time.Hour
}

// Internal checks that a request comes from an internal caller.
type Internal interface {
	Check(r *http.Request) error
}

// SharedSecret accepts requests whose InternalHeader equals Secret.
type SharedSecret struct{ Secret string }

// Check compares in constant time.
func (s SharedSecret) Check(r *http.Request) error {
	got := r.Header.Get(InternalHeader)
	if got == "" {
		return fmt.Errorf("no %s header: %w", InternalHeader, domain.ErrUnauthenticated)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.Secret)) != 1 {
		return fmt.Errorf("wrong %s: %w", InternalHeader, domain.ErrForbidden)
	}
	return nil
}

// GoogleIssuers are the issuers of Google-signed ID tokens.
var GoogleIssuers = []string{"https://accounts.google.com", "accounts.google.com"}

// GoogleIDToken accepts requests bearing a Google-signed ID token minted for
// this function (aud is one of Audiences: its own URL) by one of the allowed
// service accounts. Functions that are not public are also guarded by IAM;
// this check guards the internal routes of public ones, and a token minted
// for another service is refused even when its caller is allowed here.
//
// The signature, expiry and (given one) audience are checked by
// google.golang.org/api/idtoken, Google's own library; it checks neither the
// issuer nor iat, so those are checked here, and so are the audience list
// and the caller.
type GoogleIDToken struct {
	Audiences []string
	Allowed   []string
	// Validator fetches Google's keys (default: one whose HTTP client gives
	// up after keyFetchTimeout; keys are cached for their max-age).
	Validator *idtoken.Validator
	Now       func() time.Time

	once   sync.Once
	v      *idtoken.Validator
	errNew error
}

func (g *GoogleIDToken) validator() (*idtoken.Validator, error) {
	g.once.Do(func() {
		g.v = g.Validator
		if g.v == nil {
			g.v, g.errNew = idtoken.NewValidator(context.Background(), option.WithHTTPClient(&http.Client{Timeout: keyFetchTimeout}))
		}
	})
	return g.v, g.errNew
}

// Check validates the token, its audience, issuer and times, and the
// caller's email.
func (g *GoogleIDToken) Check(r *http.Request) error {
	tok := Bearer(r)
	if tok == "" {
		return fmt.Errorf("no bearer ID token: %w", domain.ErrUnauthenticated)
	}
	v, err := g.validator()
	if err != nil {
		return fmt.Errorf("%w: ID token validator: %w", domain.ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), keyFetchTimeout)
	defer cancel()
	p, err := v.Validate(ctx, tok, "")
	if err != nil {
		return fmt.Errorf("%w: %w", domain.ErrUnauthenticated, err)
	}
	now := time.Now()
	if g.Now != nil {
		now = g.Now()
	}
	switch {
	case !slices.Contains(g.Audiences, strings.TrimRight(p.Audience, "/")):
		return fmt.Errorf("ID token minted for %q, not for this function: %w", p.Audience, domain.ErrUnauthenticated)
	case !slices.Contains(GoogleIssuers, p.Issuer):
		return fmt.Errorf("ID token issued by %q: %w", p.Issuer, domain.ErrUnauthenticated)
	case p.IssuedAt > now.Add(time.Minute).Unix():
		return fmt.Errorf("ID token not valid yet (iat %d): %w", p.IssuedAt, domain.ErrUnauthenticated)
	case now.Unix() > p.Expires:
		return fmt.Errorf("ID token expired: %w", domain.ErrUnauthenticated)
	}
	if nbf, ok := p.Claims["nbf"].(float64); ok && int64(nbf) > now.Add(time.Minute).Unix() {
		return fmt.Errorf("ID token not valid yet (nbf %d): %w", int64(nbf), domain.ErrUnauthenticated)
	}
	email, _ := p.Claims["email"].(string)
	verified, _ := p.Claims["email_verified"].(bool)
	if !verified || !slices.Contains(g.Allowed, email) {
		return fmt.Errorf("caller %q is not allowed: %w", email, domain.ErrForbidden)
	}
	return nil
}

// Signer adds an internal credential to outbound requests for audience,
// the callee's base URL.
type Signer interface {
	Sign(r *http.Request, audience string) error
}

// SecretSigner sets InternalHeader.
type SecretSigner struct{ Secret string }

// Sign sets the header.
func (s SecretSigner) Sign(r *http.Request, _ string) error {
	r.Header.Set(InternalHeader, s.Secret)
	return nil
}

// IDTokenSigner adds a Google ID token minted for the callee's URL (so the
// callee, checking its audience, accepts it, and no other service would),
// from the metadata server (or Options' credentials), cached per audience.
type IDTokenSigner struct {
	Options []option.ClientOption

	mu      sync.Mutex
	sources map[string]oauth2.TokenSource
}

// Sign sets Authorization: Bearer <ID token for audience>.
func (s *IDTokenSigner) Sign(r *http.Request, audience string) error {
	aud := strings.TrimRight(audience, "/")
	s.mu.Lock()
	if s.sources == nil {
		s.sources = map[string]oauth2.TokenSource{}
	}
	ts, ok := s.sources[aud]
	if !ok {
		var err error
		if ts, err = idtoken.NewTokenSource(context.Background(), aud, s.Options...); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("ID token source for %s: %w", aud, err)
		}
		s.sources[aud] = ts
	}
	s.mu.Unlock()
	t, err := ts.Token()
	if err != nil {
		return fmt.Errorf("ID token for %s: %w", aud, err)
	}
	r.Header.Set("Authorization", "Bearer "+t.AccessToken)
	return nil
}

// FromConfig builds the verifiers and the signer the config selects.
func FromConfig(c config.Config) (Users, Internal, Signer) {
	var users Users = HS256{Secret: []byte(c.AuthSecret)}
	if c.AuthMode == config.AuthFirebase {
		users = &Firebase{Project: c.AuthProject}
	}
	var internal Internal = SharedSecret{Secret: c.InternalSecret}
	if c.InternalMode == config.InternalGoogle {
		internal = &GoogleIDToken{Audiences: c.InternalAudiences, Allowed: c.InternalCallers}
	}
	return users, internal, SignerFor(c.InternalMode, c.InternalSecret)
}

// SignerFor returns the outbound credential of an internal auth mode.
func SignerFor(mode, secret string) Signer {
	if mode == config.InternalGoogle {
		return &IDTokenSigner{}
	}
	return SecretSigner{Secret: secret}
}
