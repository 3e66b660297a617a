package senderauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

func seg(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sign builds a JWT with alg over claims using key (test helper implementing each algorithm).
func sign(t *testing.T, alg string, key any, claims map[string]any) string {
	t.Helper()
	signed := seg(map[string]string{"alg": alg, "typ": "JWT"}) + "." + seg(claims)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	var err error
	switch k := key.(type) {
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey:
		r, s, e := ecdsa.Sign(rand.Reader, k, sum[:])
		err = e
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(signed))
	case nil:
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	hmacKey := []byte("s3cret-s3cret-s3cret")
	good := map[string]any{"iss": "https://issuer", "aud": []string{"switchyard"}, "sub": "producer", "exp": now.Add(time.Hour).Unix()}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	policy := func(key any) Policy {
		return Policy{Brokers: []string{"shop/*"}, Tokens: [][]byte{[]byte("static-token")},
			JWT: &JWT{Issuer: "https://issuer", Audiences: []string{"switchyard"}, Subjects: []string{"producer"}, Key: key}}
	}
	shop := router.BrokerRef{Namespace: "shop", Name: "default"}
	cases := []struct {
		name   string
		policy Policy
		ref    router.BrokerRef
		h      http.Header
		want   int
	}{
		{"unprotected broker", policy(hmacKey), router.BrokerRef{Namespace: "other", Name: "b"}, nil, 0},
		{"missing header", policy(hmacKey), shop, http.Header{}, 401},
		{"basic scheme", policy(hmacKey), shop, http.Header{"Authorization": {"Basic abc"}}, 401},
		{"static token", policy(hmacKey), shop, bearer("static-token"), 0},
		{"wrong static token, no jwt", Policy{Brokers: []string{"shop/default"}, Tokens: [][]byte{[]byte("x")}}, shop, bearer("y"), 401},
		{"HS256", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, good)), 0},
		{"HS256 wrong key", policy(hmacKey), shop, bearer(sign(t, "HS256", []byte("other"), good)), 401},
		{"RS256", policy(&rsaKey.PublicKey), shop, bearer(sign(t, "RS256", rsaKey, good)), 0},
		{"ES256", policy(&ecKey.PublicKey), shop, bearer(sign(t, "ES256", ecKey, good)), 0},
		{"EdDSA", policy(edPub), shop, bearer(sign(t, "EdDSA", edKey, good)), 0},
		{"alg none", policy(&rsaKey.PublicKey), shop, bearer(sign(t, "none", nil, good)), 401},
		{"HS256 against an RSA key", policy(&rsaKey.PublicKey), shop, bearer(sign(t, "HS256", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), good)), 401},
		{"expired", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, with("exp", now.Add(-2*time.Minute).Unix()))), 401},
		{"within leeway", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, with("exp", now.Add(-30*time.Second).Unix()))), 0},
		{"not yet", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, with("nbf", now.Add(time.Hour).Unix()))), 401},
		{"wrong issuer", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, with("iss", "https://evil"))), 401},
		{"audience string", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, with("aud", "switchyard"))), 0},
		{"wrong audience", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, with("aud", "other"))), 401},
		{"subject not allowed", policy(hmacKey), shop, bearer(sign(t, "HS256", hmacKey, with("sub", "intruder"))), 403},
		{"garbage", policy(hmacKey), shop, bearer("a.b.c"), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := New([]Policy{c.policy})
			a.now = func() time.Time { return now }
			d := a.Check(c.ref, c.h)
			if d.Status != c.want {
				t.Errorf("status %d (%s), want %d", d.Status, d.Reason, c.want)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	got, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil || !got.(*ecdsa.PublicKey).Equal(&k.PublicKey) {
		t.Fatalf("ParsePublicKey: %v", err)
	}
	if _, err := ParsePublicKey([]byte("nope")); err == nil {
		t.Error("garbage accepted")
	}
}
