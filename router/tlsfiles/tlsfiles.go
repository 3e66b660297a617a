// Package tlsfiles builds TLS configurations from PEM files and keeps them current: a certificate,
// key or CA file replaced on disk (a renewed cert-manager Secret, a rotated mount) is used from the
// next handshake on, without a restart. Files are looked at again at most once a second, on a
// handshake that needs them; a file that turns unreadable keeps the last good material in use
// (an expiring certificate is better than none) and the error is reported by Err.
package tlsfiles

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Server are the files of a listener's TLS.
type Server struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, verifies client certificates; ClientAuth says whether one is
	// required (tls.RequireAndVerifyClientCert) or only checked when sent (tls.VerifyClientCertIfGiven).
	ClientCAFile string
	ClientAuth   tls.ClientAuthType
}

// Client is what a client trusts and presents beyond the system's defaults.
type Client struct {
	// CAPEM are PEM certificates trusted in addition to the system's roots (Knative's CACerts).
	CAPEM []byte
	// CertFile and KeyFile, when set, are presented as the client certificate (mTLS).
	CertFile, KeyFile string
}

// Key identifies what c configures: equal keys make equal configurations.
func (c Client) Key() string {
	h := sha256.New()
	h.Write(c.CAPEM)
	h.Write([]byte{0})
	h.Write([]byte(c.CertFile))
	h.Write([]byte{0})
	h.Write([]byte(c.KeyFile))
	return hex.EncodeToString(h.Sum(nil))
}

// ServerConfig returns a listener's configuration. It reads the files once now, so that a
// mistake is reported at start-up (the error names the file), then again as they change.
func ServerConfig(s Server) (*tls.Config, error) {
	kp := &keyPair{certFile: s.CertFile, keyFile: s.KeyFile}
	if _, err := kp.get(time.Now()); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.ClientCAFile == "" {
		base.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get(time.Now()) }
		return base, nil
	}
	cas := &certPool{file: s.ClientCAFile}
	if _, err := cas.get(time.Now()); err != nil {
		return nil, err
	}
	auth := s.ClientAuth
	if auth == tls.NoClientCert {
		auth = tls.RequireAndVerifyClientCert
	}
	// Per handshake, so that a renewed certificate or CA bundle applies to new connections.
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		now := time.Now()
		cert, err := kp.get(now)
		if err != nil {
			return nil, err
		}
		pool, err := cas.get(now)
		if err != nil {
			return nil, err
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, ClientCAs: pool, ClientAuth: auth}, nil
	}
	return base, nil
}

// ClientConfig returns a client configuration: the system's roots plus c.CAPEM, and c's client
// certificate, read again as its files change.
func ClientConfig(c Client) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(c.CAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(c.CAPEM) {
			return nil, errors.New("CACerts holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		kp := &keyPair{certFile: c.CertFile, keyFile: c.KeyFile}
		if _, err := kp.get(time.Now()); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get(time.Now()) }
	}
	return cfg, nil
}

// CheckCAPEM reports whether pemBytes holds at least one certificate, for configuration checks.
func CheckCAPEM(pemBytes []byte) error {
	if !x509.NewCertPool().AppendCertsFromPEM(pemBytes) {
		return errors.New("holds no PEM certificate")
	}
	return nil
}

// watched remembers when a set of files was last looked at and what they were then.
type watched struct {
	checked time.Time
	stamp   string // modification times and sizes of the files
}

// changed reports whether files differ from when last loaded; it looks at most once a second.
func (w *watched) changed(now time.Time, files ...string) (bool, error) {
	if !w.checked.IsZero() && now.Sub(w.checked) < time.Second {
		return false, nil
	}
	w.checked = now
	stamp := ""
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return false, fmt.Errorf("cannot read %s: %v", f, errors.Unwrap(err))
		}
		stamp += fmt.Sprintf("%s:%d:%d;", f, fi.ModTime().UnixNano(), fi.Size())
	}
	if stamp == w.stamp {
		return false, nil
	}
	w.stamp = stamp
	return true, nil
}

type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	w                 watched
	cert              *tls.Certificate
}

func (k *keyPair) get(now time.Time) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	changed, err := k.w.changed(now, k.certFile, k.keyFile)
	if err != nil || !changed {
		if k.cert != nil {
			return k.cert, nil
		}
		if err == nil {
			err = errors.New("no certificate loaded")
		}
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		k.w.stamp = "" // try again on a later handshake: a half-written pair
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("%s and %s: %v", k.certFile, k.keyFile, err)
	}
	k.cert = &cert
	return k.cert, nil
}

type certPool struct {
	file string
	mu   sync.Mutex
	w    watched
	pool *x509.CertPool
}

func (c *certPool) get(now time.Time) (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed, err := c.w.changed(now, c.file)
	if err != nil || !changed {
		if c.pool != nil {
			return c.pool, nil
		}
		if err == nil {
			err = errors.New("no CA loaded")
		}
		return nil, err
	}
	pemBytes, err := os.ReadFile(c.file)
	if err == nil {
		pool := x509.NewCertPool()
		if pool.AppendCertsFromPEM(pemBytes) {
			c.pool = pool
			return pool, nil
		}
		err = errors.New("holds no PEM certificate")
	}
	c.w.stamp = ""
	if c.pool != nil {
		return c.pool, nil
	}
	return nil, fmt.Errorf("%s: %v", c.file, err)
}
