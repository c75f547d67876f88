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
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"

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

// User authenticates r's shopper.
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

// Firebase verifies Firebase Auth / Identity Platform ID tokens: RS256, kid
// from the published certificates, iss https://securetoken.google.com/<project>,
// aud <project>, unexpired; the user id is sub.
type Firebase struct {
	Project string
	Client  *http.Client

	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	expires time.Time
}

// Verify checks the token and returns sub.
func (f *Firebase) Verify(ctx context.Context, token string) (string, error) {
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		keys, err := f.certs(ctx)
		if err != nil {
			return nil, err
		}
		k, ok := keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return k, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithIssuer("https://securetoken.google.com/"+f.Project), jwt.WithAudience(f.Project), jwt.WithLeeway(time.Minute))
	if err != nil {
		return "", err
	}
	return claims.Subject, nil
}

func (f *Firebase) certs(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys != nil && time.Now().Before(f.expires) {
		return f.keys, nil
	}
	c := f.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, FirebaseCertsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch signing keys: %w", err)
	}
	defer resp.Body.Close()
	var pems map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&pems); err != nil {
		return nil, fmt.Errorf("decode signing keys: %w", err)
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
	f.keys, f.expires = keys, time.Now().Add(time.Hour)
	return keys, nil
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

// GoogleIDToken accepts requests bearing a Google-signed ID token of one of
// the allowed service accounts. Functions that are not public are also
// guarded by IAM; this check guards the internal routes of public ones.
type GoogleIDToken struct {
	Audience string // "" skips the audience check
	Allowed  []string
}

// Check validates the token and the caller's email.
func (g GoogleIDToken) Check(r *http.Request) error {
	tok := Bearer(r)
	if tok == "" {
		return fmt.Errorf("no bearer ID token: %w", domain.ErrUnauthenticated)
	}
	p, err := idtoken.Validate(r.Context(), tok, g.Audience)
	if err != nil {
		return fmt.Errorf("%w: %w", domain.ErrUnauthenticated, err)
	}
	email, _ := p.Claims["email"].(string)
	if !slices.Contains(g.Allowed, email) {
		return fmt.Errorf("caller %q is not allowed: %w", email, domain.ErrForbidden)
	}
	return nil
}

// Signer adds an internal credential to outbound requests.
type Signer interface {
	Sign(r *http.Request) error
}

// SecretSigner sets InternalHeader.
type SecretSigner struct{ Secret string }

// Sign sets the header.
func (s SecretSigner) Sign(r *http.Request) error {
	r.Header.Set(InternalHeader, s.Secret)
	return nil
}

// IDTokenSigner adds a Google ID token for the request's target (its
// scheme://host), fetched from the metadata server and cached per audience.
type IDTokenSigner struct {
	mu      sync.Mutex
	sources map[string]oauth2.TokenSource
}

// Sign sets Authorization: Bearer <ID token for the target URL>.
func (s *IDTokenSigner) Sign(r *http.Request) error {
	aud := r.URL.Scheme + "://" + r.URL.Host
	s.mu.Lock()
	if s.sources == nil {
		s.sources = map[string]oauth2.TokenSource{}
	}
	ts, ok := s.sources[aud]
	if !ok {
		var err error
		if ts, err = idtoken.NewTokenSource(context.Background(), aud); err != nil {
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
		internal = GoogleIDToken{Allowed: c.InternalCallers}
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
