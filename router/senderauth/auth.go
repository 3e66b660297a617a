// Package senderauth decides whether a producer may publish to a broker: static bearer tokens and
// JWTs (HMAC, RSA, ECDSA or Ed25519 signed) with issuer, audience and subject checks. It is off
// unless a SwitchyardConfig names brokers to protect. Missing or invalid credentials are 401; a
// valid token whose subject is not allowed is 403. Secrets never appear in errors.
package senderauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/secret"
)

// Policy protects the brokers it names.
type Policy struct {
	// Brokers are "namespace/name" or "namespace/*".
	Brokers []string
	// Tokens are accepted static bearer tokens.
	Tokens [][]byte
	// TokenFiles are accepted bearer tokens kept in files, read again when they change (a
	// revoked token stops working without a reload; an unreadable file accepts nothing).
	TokenFiles []*secret.Watched
	// JWT, when set, accepts JSON Web Tokens it verifies.
	JWT *JWT
}

// JWT describes the tokens a policy accepts.
type JWT struct {
	Issuer    string
	Audiences []string
	// Subjects allowed to publish; empty allows any verified token.
	Subjects []string
	// Key is an HMAC secret ([]byte) or a public key (*rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey).
	Key any
	// Keys, when set instead of Key, finds the public key by the token's key id (JWKS).
	Keys *KeySet
	// MaxAge bounds a token's lifetime: one issued (iat) longer ago, or expiring (exp) further
	// ahead, is refused. 0 means DefaultMaxTokenAge.
	MaxAge time.Duration
}

// DefaultMaxTokenAge is the longest-lived token accepted by default: Kubernetes' projected
// service-account tokens live an hour, and a stolen token should not be good for weeks.
const DefaultMaxTokenAge = 24 * time.Hour

// Decision is the outcome of a check.
type Decision struct {
	Status int // 0 allowed, 401 or 403
	Reason string
}

// Authenticator holds the policies of one configuration; immutable.
type Authenticator struct {
	policies []Policy
	now      func() time.Time
}

// New returns an Authenticator for policies; with none, every request is allowed.
func New(policies []Policy) *Authenticator {
	return &Authenticator{policies: policies, now: time.Now}
}

func (p *Policy) covers(ref router.BrokerRef) bool {
	for _, b := range p.Brokers {
		ns, name, _ := strings.Cut(b, "/")
		if ns == ref.Namespace && (name == "*" || name == ref.Name) {
			return true
		}
	}
	return false
}

// Check decides whether the request h may publish to ref.
func (a *Authenticator) Check(ref router.BrokerRef, h http.Header) Decision {
	return a.CheckAddress(ref, "broker "+ref.String(), h)
}

// CheckAddress decides whether the request h may publish to the address namespace/name of
// something other than a broker that the ingress serves (a CassandraSink, a KafkaSink): a policy
// naming "namespace/name" or "namespace/*" covers it as it covers the broker of that name, so that
// protecting a namespace protects every address in it. what names it in the reasons.
func (a *Authenticator) CheckAddress(ref router.BrokerRef, what string, h http.Header) Decision {
	var p *Policy
	for i := range a.policies {
		if a.policies[i].covers(ref) {
			p = &a.policies[i]
			break
		}
	}
	if p == nil {
		return Decision{}
	}
	return p.Verify(h, what, a.now())
}

// CheckUnknown decides a request for a broker of namespace ns that does not exist. Where policies
// protect brokers of ns, it answers as for a protected broker (401 without credentials one of them
// accepts), so that 404 and 401 do not tell an outsider which brokers exist; elsewhere it allows
// (and the caller answers 404).
func (a *Authenticator) CheckUnknown(ns string, h http.Header) Decision {
	var first *Decision
	for i := range a.policies {
		p := &a.policies[i]
		if !p.coversNamespace(ns) {
			continue
		}
		d := p.Verify(h, "namespace "+ns, a.now())
		if d.Status == 0 || d.Status == http.StatusForbidden {
			return Decision{} // a known producer may learn that the broker does not exist
		}
		if first == nil {
			first = &d
		}
	}
	if first == nil {
		return Decision{}
	}
	return *first
}

func (p *Policy) coversNamespace(ns string) bool {
	for _, b := range p.Brokers {
		if bns, _, _ := strings.Cut(b, "/"); bns == ns {
			return true
		}
	}
	return false
}

// Protects reports whether some policy covers ref.
func (a *Authenticator) Protects(ref router.BrokerRef) bool {
	for i := range a.policies {
		if a.policies[i].covers(ref) {
			return true
		}
	}
	return false
}

// Verify checks the bearer credentials of h against p's tokens and JWT, whatever p's brokers:
// for callers that protect something else with the same verifiers (the admin API). what names
// the protected thing in the reasons.
func (p *Policy) Verify(h http.Header, what string, now time.Time) Decision {
	auth := h.Get("Authorization")
	scheme, token, _ := strings.Cut(auth, " ")
	if auth == "" || !strings.EqualFold(scheme, "bearer") || token == "" {
		return Decision{http.StatusUnauthorized, what + " requires an Authorization: Bearer token"}
	}
	for _, t := range p.Tokens {
		if subtle.ConstantTimeCompare(t, []byte(token)) == 1 {
			return Decision{}
		}
	}
	for _, f := range p.TokenFiles {
		if v := f.Value(now); v != nil && subtle.ConstantTimeCompare(v, []byte(token)) == 1 {
			return Decision{}
		}
	}
	if p.JWT == nil {
		return Decision{http.StatusUnauthorized, "the bearer token is not one " + what + " accepts"}
	}
	claims, err := p.JWT.verify(token, now)
	if err != nil {
		return Decision{http.StatusUnauthorized, "invalid token: " + err.Error()}
	}
	if len(p.JWT.Subjects) > 0 && !slices.Contains(p.JWT.Subjects, claims.Subject) {
		return Decision{http.StatusForbidden, fmt.Sprintf("subject %q may not use %s", claims.Subject, what)}
	}
	return Decision{}
}

type claims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	ExpiresAt *float64        `json:"exp"`
	NotBefore *float64        `json:"nbf"`
	IssuedAt  *float64        `json:"iat"`
}

// leeway tolerates clock skew between the token issuer and us.
const leeway = time.Minute

func (j *JWT) verify(token string, now time.Time) (*claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT (want header.payload.signature)")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("signature is not base64url")
	}
	key := j.Key
	if j.Keys != nil {
		if key, err = j.Keys.Key(header.Kid, now); err != nil {
			return nil, err
		}
	}
	if err := verifySignature(header.Alg, key, []byte(parts[0]+"."+parts[1]), sig); err != nil {
		return nil, err
	}
	var c claims
	if err := decodeSegment(parts[1], &c); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	maxAge := j.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxTokenAge
	}
	switch {
	case c.ExpiresAt == nil:
		return nil, errors.New("the token has no expiry (exp): a token that never expires is not accepted")
	case now.After(time.Unix(int64(*c.ExpiresAt), 0).Add(leeway)):
		return nil, errors.New("expired")
	case time.Unix(int64(*c.ExpiresAt), 0).Sub(now) > maxAge+leeway:
		return nil, fmt.Errorf("the token expires more than %s from now (jwt.maxTokenAge)", maxAge)
	case c.IssuedAt != nil && now.Sub(time.Unix(int64(*c.IssuedAt), 0)) > maxAge+leeway:
		return nil, fmt.Errorf("the token was issued more than %s ago (jwt.maxTokenAge)", maxAge)
	}
	if c.NotBefore != nil && now.Add(leeway).Before(time.Unix(int64(*c.NotBefore), 0)) {
		return nil, errors.New("not valid yet")
	}
	if j.Issuer != "" && c.Issuer != j.Issuer {
		return nil, fmt.Errorf("issuer %q is not %q", c.Issuer, j.Issuer)
	}
	if len(j.Audiences) > 0 && !audienceMatches(c.Audience, j.Audiences) {
		return nil, errors.New("audience does not name this router")
	}
	return &c, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("not JSON")
	}
	return nil
}

func audienceMatches(raw json.RawMessage, want []string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return slices.Contains(want, one)
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if slices.Contains(want, a) {
				return true
			}
		}
	}
	return false
}

// verifySignature checks sig over signed with key under alg. The algorithm must fit the key's
// type, so a token cannot pick "none" or HMAC-with-the-public-key.
func verifySignature(alg string, key any, signed, sig []byte) error {
	hashOf := func(h crypto.Hash) []byte {
		var hh hash.Hash
		switch h {
		case crypto.SHA384:
			hh = sha512.New384()
		case crypto.SHA512:
			hh = sha512.New()
		default:
			hh = sha256.New()
		}
		hh.Write(signed)
		return hh.Sum(nil)
	}
	bad := errors.New("signature does not verify")
	hashes := map[string]crypto.Hash{"256": crypto.SHA256, "384": crypto.SHA384, "512": crypto.SHA512}
	if len(alg) != 5 && alg != "EdDSA" {
		return fmt.Errorf("algorithm %q is not accepted", alg)
	}
	switch k := key.(type) {
	case []byte:
		h, ok := hashes[strings.TrimPrefix(alg, "HS")]
		if !strings.HasPrefix(alg, "HS") || !ok {
			return fmt.Errorf("algorithm %q does not fit an HMAC key", alg)
		}
		var mac hash.Hash
		switch h {
		case crypto.SHA384:
			mac = hmac.New(sha512.New384, k)
		case crypto.SHA512:
			mac = hmac.New(sha512.New, k)
		default:
			mac = hmac.New(sha256.New, k)
		}
		mac.Write(signed)
		if !hmac.Equal(mac.Sum(nil), sig) {
			return bad
		}
	case *rsa.PublicKey:
		h, ok := hashes[alg[2:]]
		switch {
		case !ok:
			return fmt.Errorf("algorithm %q does not fit an RSA key", alg)
		case strings.HasPrefix(alg, "RS"):
			if rsa.VerifyPKCS1v15(k, h, hashOf(h), sig) != nil {
				return bad
			}
		case strings.HasPrefix(alg, "PS"):
			if rsa.VerifyPSS(k, h, hashOf(h), sig, nil) != nil {
				return bad
			}
		default:
			return fmt.Errorf("algorithm %q does not fit an RSA key", alg)
		}
	case *ecdsa.PublicKey:
		h, ok := hashes[strings.TrimPrefix(alg, "ES")]
		if !strings.HasPrefix(alg, "ES") || !ok {
			return fmt.Errorf("algorithm %q does not fit an ECDSA key", alg)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return bad
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, hashOf(h), r, s) {
			return bad
		}
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return fmt.Errorf("algorithm %q does not fit an Ed25519 key", alg)
		}
		if !ed25519.Verify(k, signed, sig) {
			return bad
		}
	default:
		return errors.New("no usable key configured")
	}
	return nil
}

// ParsePublicKey reads a PEM "PUBLIC KEY" (PKIX: RSA, ECDSA or Ed25519).
func ParsePublicKey(pemBytes []byte) (any, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return key, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}
