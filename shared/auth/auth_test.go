package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// keyServer publishes signing keys as Google does: a JWKS (Google ID
// tokens) and x509 certificates by kid (Firebase), with a max-age. While
// down it hangs, as an unreachable server would, until the client gives up.
type keyServer struct {
	srv  *httptest.Server
	down atomic.Bool
	hits atomic.Int64
	// failAfter, when set, makes the server answer 500 after that long.
	failAfter atomic.Int64
	jwks      []byte
	certs     []byte
}

func newKeyServer(t *testing.T, kid string, key *rsa.PrivateKey) *keyServer {
	t.Helper()
	k := &keyServer{}
	b64 := base64.RawURLEncoding.EncodeToString
	k.jwks, _ = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "securetoken"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k.certs, _ = json.Marshal(map[string]string{kid: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits.Add(1)
		if d := time.Duration(k.failAfter.Load()); d > 0 {
			time.Sleep(d)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if k.down.Load() {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		if strings.Contains(r.URL.Path, "x509") {
			_, _ = w.Write(k.certs)
			return
		}
		_, _ = w.Write(k.jwks)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

// redirect sends every request to one test server, whatever its URL: the
// idtoken library fetches Google's fixed certificate URL.
type redirect struct{ to *url.URL }

func (r redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host = r.to.Scheme, r.to.Host
	return http.DefaultTransport.RoundTrip(req)
}

func (k *keyServer) client(timeout time.Duration) *http.Client {
	u, _ := url.Parse(k.srv.URL)
	return &http.Client{Transport: redirect{u}, Timeout: timeout}
}

func newRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forged tokens that no verifier may accept, whatever their claims.
func forged(t *testing.T, pub *rsa.PublicKey, kid string, claims jwt.MapClaims) map[string]string {
	t.Helper()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})
	return map[string]string{
		"signed by another key":         sign(t, jwt.SigningMethodRS256, newRSA(t), kid, claims),
		"alg none":                      none,
		"HS256 signed with the pub key": sign(t, jwt.SigningMethodHS256, pubPEM, kid, claims),
	}
}

func request(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

const (
	callee   = "https://deductstock-123.europe-west1.run.app"
	relaySA  = "relay@p.iam.gserviceaccount.com"
	googleIS = "https://accounts.google.com"
)

func googleClaims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": googleIS, "aud": callee, "sub": "1234", "email": relaySA, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func newGoogleVerifier(t *testing.T, ks *keyServer, timeout time.Duration) *GoogleIDToken {
	t.Helper()
	v, err := idtoken.NewValidator(context.Background(), option.WithHTTPClient(ks.client(timeout)))
	if err != nil {
		t.Fatal(err)
	}
	return &GoogleIDToken{Audiences: []string{callee}, Allowed: []string{relaySA}, Validator: v}
}

func TestGoogleIDTokenCases(t *testing.T) {
	key := newRSA(t)
	ks := newKeyServer(t, "k1", key)
	g := newGoogleVerifier(t, ks, 2*time.Second)
	mint := func(mod func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodRS256, key, "k1", googleClaims(mod))
	}
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"valid", mint(nil), nil},
		{"valid, audience with a trailing slash", mint(func(c jwt.MapClaims) { c["aud"] = callee + "/" }), nil},
		{"no token", "", domain.ErrUnauthenticated},
		{"minted for another service", mint(func(c jwt.MapClaims) { c["aud"] = "https://pay-123.europe-west1.run.app" }), domain.ErrUnauthenticated},
		{"wrong issuer", mint(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), domain.ErrUnauthenticated},
		{"expired", mint(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), domain.ErrUnauthenticated},
		{"not yet valid (iat)", mint(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() }), domain.ErrUnauthenticated},
		{"not yet valid (nbf)", mint(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), domain.ErrUnauthenticated},
		{"caller not allowed", mint(func(c jwt.MapClaims) { c["email"] = "intruder@p.iam.gserviceaccount.com" }), domain.ErrForbidden},
		{"email not verified", mint(func(c jwt.MapClaims) { c["email_verified"] = false }), domain.ErrForbidden},
	}
	for name, tok := range forged(t, &key.PublicKey, "k1", googleClaims(nil)) {
		tests = append(tests, struct {
			name string
			tok  string
			want error
		}{name, tok, domain.ErrUnauthenticated})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := g.Check(request(tc.tok))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

// While the key server is down, keys already fetched still verify; a
// verifier with nothing cached refuses in bounded time instead of hanging.
func TestGoogleIDTokenKeyServerOutage(t *testing.T) {
	key := newRSA(t)
	ks := newKeyServer(t, "k1", key)
	tok := sign(t, jwt.SigningMethodRS256, key, "k1", googleClaims(nil))
	g := newGoogleVerifier(t, ks, 300*time.Millisecond)
	if err := g.Check(request(tok)); err != nil {
		t.Fatal(err)
	}
	ks.down.Store(true)
	if err := g.Check(request(tok)); err != nil {
		t.Fatalf("cached keys refused during an outage: %v", err)
	}
	cold := newGoogleVerifier(t, ks, 300*time.Millisecond)
	start := time.Now()
	if err := cold.Check(request(tok)); !errors.Is(err, domain.ErrUnauthenticated) {
		t.Fatalf("no keys and no key server: %v, want a refusal", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("refusal took %v: the verifier waited on a dead key server", d)
	}
}

// The signer mints, for each callee, a token whose audience is that
// callee's URL (from a service account key, through a token endpoint that
// plays Google's); the callee accepts it and another function refuses it.
func TestGoogleIDTokenSignerMintsForCallee(t *testing.T) {
	google := newRSA(t)
	ks := newKeyServer(t, "k1", google)
	saKey := newRSA(t)
	var audiences []string
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		assertion, err := jwt.Parse(r.PostForm.Get("assertion"), func(*jwt.Token) (any, error) { return &saKey.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}))
		if err != nil {
			http.Error(w, "bad assertion: "+err.Error(), 400)
			return
		}
		claims := assertion.Claims.(jwt.MapClaims)
		aud, _ := claims["target_audience"].(string)
		audiences = append(audiences, aud)
		id := sign(t, jwt.SigningMethodRS256, google, "k1", googleClaims(func(c jwt.MapClaims) { c["aud"] = aud }))
		_ = json.NewEncoder(w).Encode(map[string]any{"id_token": id, "token_type": "Bearer", "expires_in": 3600})
	}))
	defer tokenSrv.Close()
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "p", "private_key_id": "sa1", "client_email": relaySA, "client_id": "1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})),
		"token_uri":   tokenSrv.URL + "/token",
	})
	signer := &IDTokenSigner{Options: []option.ClientOption{option.WithAuthCredentialsJSON(option.ServiceAccount, sa)}}
	r := request("")
	if err := signer.Sign(r, callee+"/"); err != nil {
		t.Fatal(err)
	}
	if len(audiences) != 1 || audiences[0] != callee {
		t.Fatalf("token endpoint asked for audiences %v, want [%s]", audiences, callee)
	}
	if err := newGoogleVerifier(t, ks, 2*time.Second).Check(r); err != nil {
		t.Fatalf("the callee refused the signer's token: %v", err)
	}
	other := newGoogleVerifier(t, ks, 2*time.Second)
	other.Audiences = []string{"https://pay-123.europe-west1.run.app"}
	if err := other.Check(r); !errors.Is(err, domain.ErrUnauthenticated) {
		t.Fatalf("another function accepted a token minted for %s: %v", callee, err)
	}
}

const fbProject = "shop-prod"

func firebaseClaims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": "https://securetoken.google.com/" + fbProject, "aud": fbProject, "sub": "alice",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func newFirebase(ks *keyServer, timeout time.Duration) *Firebase {
	return &Firebase{Project: fbProject, Client: ks.client(timeout), CertsURL: ks.srv.URL + "/x509/securetoken"}
}

func TestFirebaseCases(t *testing.T) {
	key := newRSA(t)
	ks := newKeyServer(t, "k1", key)
	f := newFirebase(ks, 2*time.Second)
	mint := func(mod func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodRS256, key, "k1", firebaseClaims(mod))
	}
	tests := map[string]struct {
		tok string
		ok  bool
	}{
		"valid":                   {mint(nil), true},
		"wrong audience":          {mint(func(c jwt.MapClaims) { c["aud"] = "other-project" }), false},
		"wrong issuer":            {mint(func(c jwt.MapClaims) { c["iss"] = "https://securetoken.google.com/other" }), false},
		"expired":                 {mint(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }), false},
		"no expiry":               {mint(func(c jwt.MapClaims) { delete(c, "exp") }), false},
		"not yet valid (iat)":     {mint(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() }), false},
		"not yet valid (nbf)":     {mint(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), false},
		"no subject":              {mint(func(c jwt.MapClaims) { delete(c, "sub") }), false},
		"unknown key id":          {sign(t, jwt.SigningMethodRS256, key, "k2", firebaseClaims(nil)), false},
		"garbage":                 {"not.a.token", false},
		"service account token":   {sign(t, jwt.SigningMethodRS256, key, "k1", googleClaims(nil)), false},
		"valid again (cache hit)": {mint(nil), true},
	}
	for name, tok := range forged(t, &key.PublicKey, "k1", firebaseClaims(nil)) {
		tests[name] = struct {
			tok string
			ok  bool
		}{tok, false}
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sub, err := f.Verify(context.Background(), tc.tok)
			if tc.ok && (err != nil || sub != "alice") || !tc.ok && err == nil {
				t.Fatalf("Verify = %q, %v; want ok=%v", sub, err, tc.ok)
			}
		})
	}
	// Behind the HTTP check: a bad token is 401, never another status.
	if _, err := User(context.Background(), f, request(mint(func(c jwt.MapClaims) { c["aud"] = "x" }))); !errors.Is(err, domain.ErrUnauthenticated) {
		t.Fatalf("User with a bad token: %v", err)
	}
	if hits := ks.hits.Load(); hits > 3 {
		t.Fatalf("the key server was asked %d times: keys are not cached", hits)
	}
}

// Keys in the cache verify during a key-server outage, also after their
// max-age; a verifier with none refuses in bounded time.
func TestFirebaseKeyServerOutage(t *testing.T) {
	key := newRSA(t)
	ks := newKeyServer(t, "k1", key)
	now := time.Now()
	f := newFirebase(ks, 300*time.Millisecond)
	f.Now = func() time.Time { return now }
	if _, err := f.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, key, "k1", firebaseClaims(nil))); err != nil {
		t.Fatal(err)
	}
	ks.down.Store(true)
	now = now.Add(2 * time.Hour) // past the keys' max-age of an hour
	late := sign(t, jwt.SigningMethodRS256, key, "k1", firebaseClaims(func(c jwt.MapClaims) {
		c["iat"], c["exp"] = now.Unix(), now.Add(time.Hour).Unix()
	}))
	if _, err := f.Verify(context.Background(), late); err != nil {
		t.Fatalf("cached keys refused during an outage: %v", err)
	}
	cold := newFirebase(ks, 300*time.Millisecond)
	start := time.Now()
	if _, err := cold.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, key, "k1", firebaseClaims(nil))); err == nil {
		t.Fatal("verified with no keys and no key server")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("refusal took %v: the verifier waited on a dead key server", d)
	}
}

// A slow, failing key server never puts shoppers in line: with keys past
// their max-age, six concurrent verifies are served from the cache at once
// while one refresh runs behind them; its failure is backed off (no
// refresh per request). A verifier with no keys makes one fetch for all
// six, which fail together when it fails, and the next refuses at once.
func TestFirebaseSlowKeyServerNeverSerializes(t *testing.T) {
	key := newRSA(t)
	ks := newKeyServer(t, "k1", key)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	f := newFirebase(ks, 5*time.Second)
	f.Now = now
	tok := func() string {
		return sign(t, jwt.SigningMethodRS256, key, "k1", firebaseClaims(func(c jwt.MapClaims) {
			c["iat"], c["exp"] = now().Unix(), now().Add(time.Hour).Unix()
		}))
	}
	if _, err := f.Verify(context.Background(), tok()); err != nil {
		t.Fatal(err)
	}
	ks.failAfter.Store(int64(500 * time.Millisecond))
	clock.Add(int64(2 * time.Hour)) // past max-age
	burst := func(v *Firebase) []time.Duration {
		var wg sync.WaitGroup
		took := make([]time.Duration, 6)
		errs := make([]error, 6)
		for i := range took {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				_, errs[i] = v.Verify(context.Background(), tok())
				took[i] = time.Since(start)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if (err == nil) != (v == f) {
				t.Fatalf("verify %d: %v", i, err)
			}
		}
		return took
	}
	hits := ks.hits.Load()
	for i, d := range burst(f) {
		if d > 250*time.Millisecond {
			t.Errorf("verify %d with stale keys took %v: it waited for the key server", i, d)
		}
	}
	time.Sleep(700 * time.Millisecond) // the background refresh fails
	burst(f)
	if n := ks.hits.Load() - hits; n != 1 {
		t.Errorf("%d fetches for 12 verifies and a failed refresh; want 1 (one in flight, then backed off)", n)
	}

	cold := newFirebase(ks, 5*time.Second)
	cold.Now = now
	hits = ks.hits.Load()
	for i, d := range burst(cold) {
		if d > 1500*time.Millisecond {
			t.Errorf("cold verify %d took %v; the one fetch fails after 0.5 s", i, d)
		}
	}
	start := time.Now()
	if _, err := cold.Verify(context.Background(), tok()); err == nil || time.Since(start) > 100*time.Millisecond {
		t.Errorf("verify during the backoff: %v after %v, want a refusal at once", err, time.Since(start))
	}
	if n := ks.hits.Load() - hits; n != 1 {
		t.Errorf("a cold verifier made %d fetches for 7 verifies; want 1", n)
	}
}
