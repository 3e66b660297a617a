package senderauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// KeySet finds a JWT's verification key by its key id ("kid"): a JSON Web Key Set from a file, a
// URL, or the jwks_uri an issuer publishes (OpenID Connect discovery, as the Kubernetes API server
// does for service-account tokens). Keys are fetched again every refresh interval and, at most
// every 30 s, when a token names a key id not in the set: a rotated key is picked up without a
// restart.
type KeySet struct {
	file, url, issuer string
	client            *http.Client
	bearerFile        string
	refresh           time.Duration

	mu      sync.Mutex
	keys    map[string]any // kid -> public key
	anyKey  []any          // every key, for tokens without a kid
	fetched time.Time
	tried   time.Time
	modTime time.Time
	lastErr error
}

// KeySetOptions say where a KeySet comes from: exactly one of File, URL, or Issuer (discovery).
type KeySetOptions struct {
	File   string
	URL    string
	Issuer string
	// CAFile verifies the HTTPS server of URL or Issuer (default: the system's roots);
	// BearerTokenFile is sent as Authorization to it (a service account's token, which the
	// Kubernetes API server asks of discovery requests).
	CAFile, BearerTokenFile string
	// Refresh is how often keys are fetched again (default 5 minutes).
	Refresh time.Duration
}

// NewKeySet prepares a key set; keys are loaded on first use.
func NewKeySet(o KeySetOptions) (*KeySet, error) {
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Minute
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" {
		pemBytes, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v", o.CAFile, errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &KeySet{file: o.File, url: o.URL, issuer: strings.TrimSuffix(o.Issuer, "/"), bearerFile: o.BearerTokenFile,
		client: &http.Client{Transport: tr, Timeout: 5 * time.Second}, refresh: o.Refresh}, nil
}

// Key returns the key named kid ("" when the token names none: the set's only key).
func (s *KeySet) Key(kid string, now time.Time) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stale := s.keys == nil || now.Sub(s.fetched) > s.refresh
	if !stale && s.file != "" {
		if fi, err := os.Stat(s.file); err == nil && !fi.ModTime().Equal(s.modTime) {
			stale = true
		}
	}
	_, known := s.keys[kid]
	if (stale || (!known && kid != "")) && now.Sub(s.tried) > 30*time.Second || s.keys == nil && s.tried.IsZero() {
		s.loadLocked(now)
	}
	if s.keys == nil {
		return nil, fmt.Errorf("no signing keys available: %v", s.lastErr)
	}
	if kid == "" {
		if len(s.anyKey) == 1 {
			return s.anyKey[0], nil
		}
		return nil, errors.New("the token names no key (kid) and the key set holds several")
	}
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("no key %q in the key set", kid)
}

func (s *KeySet) loadLocked(now time.Time) {
	s.tried = now
	raw, err := s.fetch()
	if err != nil {
		s.lastErr = err
		return // keep the keys we had: an unreachable issuer does not lock everyone out
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		s.lastErr = fmt.Errorf("the key set is not a JSON Web Key Set: %v", err)
		return
	}
	keys := map[string]any{}
	var all []any
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys[k.KeyID] = k.Key
		all = append(all, k.Key)
	}
	if len(all) == 0 {
		s.lastErr = errors.New("the key set holds no public signing key")
		return
	}
	s.keys, s.anyKey, s.fetched, s.lastErr = keys, all, now, nil
}

func (s *KeySet) fetch() ([]byte, error) {
	if s.file != "" {
		fi, err := os.Stat(s.file)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v", s.file, errors.Unwrap(err))
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v", s.file, errors.Unwrap(err))
		}
		s.modTime = fi.ModTime()
		return b, nil
	}
	u := s.url
	if u == "" {
		var disc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		b, err := s.get(s.issuer + "/.well-known/openid-configuration")
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &disc); err != nil || disc.JWKSURI == "" {
			return nil, fmt.Errorf("%s/.well-known/openid-configuration names no jwks_uri", s.issuer)
		}
		if strings.TrimSuffix(disc.Issuer, "/") != s.issuer {
			return nil, fmt.Errorf("discovery at %s names issuer %q", s.issuer, disc.Issuer)
		}
		u = disc.JWKSURI
	}
	return s.get(u)
}

func (s *KeySet) get(u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if s.bearerFile != "" {
		if b, err := os.ReadFile(s.bearerFile); err == nil {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	return b, nil
}
