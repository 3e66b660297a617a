package senderauth

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/secret"
)

// signKid is an RS256 JWT naming its key id.
func signKid(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signed := seg(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid}) + "." + seg(claims)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func jwks(t *testing.T, keys map[string]*rsa.PrivateKey) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTokenRules (issue #16, item 10): a JWT without exp never expired, and one valid for years was
// as good as one valid for an hour; both are refused now.
func TestTokenRules(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := []byte("0123456789abcdef0123456789abcdef")
	a := New([]Policy{{Brokers: []string{"ns/b"}, JWT: &JWT{Key: secret, MaxAge: time.Hour}}})
	a.now = func() time.Time { return now }
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	cases := []struct {
		name   string
		claims map[string]any
		want   string // "" when accepted
	}{
		{"valid", map[string]any{"exp": now.Add(30 * time.Minute).Unix(), "iat": now.Add(-time.Minute).Unix()}, ""},
		{"no exp", map[string]any{"sub": "x"}, "no expiry"},
		{"expires too far ahead", map[string]any{"exp": now.Add(48 * time.Hour).Unix()}, "expires more than 1h0m0s from now"},
		{"issued too long ago", map[string]any{"exp": now.Add(time.Minute).Unix(), "iat": now.Add(-3 * time.Hour).Unix()}, "issued more than 1h0m0s ago"},
		{"expired", map[string]any{"exp": now.Add(-time.Hour).Unix()}, "expired"},
	}
	for _, c := range cases {
		d := a.Check(ref, bearer(sign(t, "HS256", secret, c.claims)))
		if c.want == "" && d.Status != 0 || c.want != "" && (d.Status != http.StatusUnauthorized || !strings.Contains(d.Reason, c.want)) {
			t.Errorf("%s: %+v, want %q", c.name, d, c.want)
		}
	}
}

// TestTokenFileIsReadAgain: a token file is read again when it changes, so revoking a token takes
// effect without a reload; a token file that disappears accepts nothing.
func TestTokenFileIsReadAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("old-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Policy{TokenFiles: []*secret.Watched{secret.Watch(secret.Ref{File: path}, "")}}
	now := time.Now()
	if d := p.Verify(bearer("old-token"), "x", now); d.Status != 0 {
		t.Fatalf("the file's token: %+v", d)
	}
	if err := os.WriteFile(path, []byte("new-token-longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if d := p.Verify(bearer("old-token"), "x", now); d.Status != http.StatusUnauthorized {
		t.Errorf("a revoked token still works: %+v", d)
	}
	if d := p.Verify(bearer("new-token-longer"), "x", now); d.Status != 0 {
		t.Errorf("the rotated token: %+v", d)
	}
	os.Remove(path)
	now = now.Add(2 * time.Second)
	if d := p.Verify(bearer("new-token-longer"), "x", now); d.Status != http.StatusUnauthorized {
		t.Errorf("a token whose file is gone still works: %+v", d)
	}
}

// TestKeySets: keys come from a JWKS file, a JWKS URL, or OIDC discovery, are picked by kid, and a
// rotated key is found without a restart.
func TestKeySets(t *testing.T) {
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := rsa.GenerateKey(rand.Reader, 2048)
	var served atomic.Pointer[[]byte]
	first := jwks(t, map[string]*rsa.PrivateKey{"k1": k1})
	served.Store(&first)
	var fetches atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
		case "/keys":
			fetches.Add(1)
			_, _ = w.Write(*served.Load())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, first, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]KeySetOptions{
		"file": {File: file}, "url": {URL: srv.URL + "/keys"}, "discovery": {Issuer: srv.URL},
	} {
		t.Run(name, func(t *testing.T) {
			served.Store(&first)
			if err := os.WriteFile(file, first, 0o600); err != nil {
				t.Fatal(err)
			}
			ks, err := NewKeySet(o)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			p := &Policy{JWT: &JWT{Keys: ks, Audiences: []string{"switchyard"}}}
			claims := map[string]any{"aud": "switchyard", "exp": now.Add(time.Minute).Unix()}
			if d := p.Verify(bearer(signKid(t, k1, "k1", claims)), "x", now); d.Status != 0 {
				t.Fatalf("k1: %+v", d)
			}
			if d := p.Verify(bearer(signKid(t, k2, "k1", claims)), "x", now); d.Status != http.StatusUnauthorized {
				t.Fatalf("a token signed by another key under k1's id: %+v", d)
			}
			// The issuer rotates to k2; a token naming k2 makes the set fetch again (once the
			// 30 s since the last fetch have passed).
			second := jwks(t, map[string]*rsa.PrivateKey{"k1": k1, "k2": k2})
			served.Store(&second)
			if err := os.WriteFile(file, second, 0o600); err != nil {
				t.Fatal(err)
			}
			later := now.Add(31 * time.Second)
			if d := p.Verify(bearer(signKid(t, k2, "k2", claims)), "x", later); d.Status != 0 {
				t.Fatalf("k2 after rotation: %+v", d)
			}
			if d := p.Verify(bearer(signKid(t, k2, "k9", claims)), "x", later); d.Status != http.StatusUnauthorized || !strings.Contains(d.Reason, `no key "k9"`) {
				t.Fatalf("an unknown kid: %+v", d)
			}
		})
	}
}

// TestUnknownBrokerLooksProtected: where policies protect a namespace, a broker that does not exist
// answers as a protected one does (401 without credentials), so 404 does not reveal which exist.
func TestUnknownBrokerLooksProtected(t *testing.T) {
	a := New([]Policy{{Brokers: []string{"shop/orders"}, Tokens: [][]byte{[]byte("shop-token")}}})
	if d := a.CheckUnknown("shop", http.Header{}); d.Status != http.StatusUnauthorized {
		t.Errorf("unknown broker in a protected namespace without credentials: %+v", d)
	}
	if d := a.CheckUnknown("shop", bearer("shop-token")); d.Status != 0 {
		t.Errorf("with the namespace's credentials: %+v (want allowed, then 404)", d)
	}
	if d := a.CheckUnknown("open", http.Header{}); d.Status != 0 {
		t.Errorf("an unprotected namespace: %+v", d)
	}
}
