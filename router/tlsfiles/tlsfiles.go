// Package tlsfiles builds every TLS configuration of Switchyard, servers' and clients' (to
// subscribers, Kafka, Cassandra), from PEM files or PEM read from Secrets, and keeps file-based
// ones current: a certificate, key or CA file replaced on disk (a renewed cert-manager Secret, a
// rotated mount) is used from the next handshake on, without a restart. Files are looked at again at most once a second, on a
// handshake that needs them; a file that turns unreadable keeps the last good material in use
// (an expiring certificate is better than none).
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

// Client is what a TLS client (to a subscriber, to Kafka, to Cassandra) trusts and presents.
type Client struct {
	// CAPEM are PEM certificates to trust: beside the system's roots with SystemRoots (Knative's
	// CACerts for a destination), else instead of them (a private cluster's CA). None: the
	// system's roots.
	CAPEM       []byte
	SystemRoots bool
	// CertFile and KeyFile, when set, are presented as the client certificate (mTLS) and read
	// again as they change; CertPEM and KeyPEM instead give it as read (a Secret read at connect).
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
	// ServerName overrides the name verified; InsecureSkipVerify verifies nothing (tests only).
	ServerName         string
	InsecureSkipVerify bool
}

// Key identifies what c configures: equal keys make equal configurations.
func (c Client) Key() string {
	h := sha256.New()
	for _, part := range [][]byte{c.CAPEM, []byte(c.CertFile), []byte(c.KeyFile), c.CertPEM, c.KeyPEM, []byte(c.ServerName),
		{boolByte(c.SystemRoots), boolByte(c.InsecureSkipVerify)}} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// ServerConfig returns a listener's configuration. It reads the files once now, so that a
// mistake is reported at start-up (the error names the file), then again as they change.
func ServerConfig(s Server) (*tls.Config, error) {
	kp := newKeyPair(s.CertFile, s.KeyFile)
	if _, err := kp.get(time.Now()); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.ClientCAFile == "" {
		base.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get(time.Now()) }
		return base, nil
	}
	cas := newCertPool(s.ClientCAFile)
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

// ClientConfig returns c's client configuration; a client certificate in files is read again as
// they change. Errors say which part is wrong, never a key's content.
func ClientConfig(c Client) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if len(c.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if c.SystemRoots {
			if system, err := x509.SystemCertPool(); err == nil && system != nil {
				pool = system
			}
		}
		if !pool.AppendCertsFromPEM(c.CAPEM) {
			return nil, errors.New("the CA holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if len(c.CertPEM) > 0 || len(c.KeyPEM) > 0 {
		pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		kp := newKeyPair(c.CertFile, c.KeyFile)
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

// reloading is material loaded from files and loaded again when they change: looked at at most
// once a second, on use. A failed load keeps the last good material (and tries again later).
type reloading[T any] struct {
	files []string
	load  func() (T, error)

	mu      sync.Mutex
	checked time.Time
	stamp   string // modification times and sizes of the files when last loaded
	value   T
	loaded  bool
}

func (r *reloading[T]) get(now time.Time) (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded && now.Sub(r.checked) < time.Second {
		return r.value, nil
	}
	r.checked = now
	stamp, err := stampOf(r.files)
	if err == nil && stamp == r.stamp && r.loaded {
		return r.value, nil
	}
	if err == nil {
		var v T
		if v, err = r.load(); err == nil {
			r.value, r.stamp, r.loaded = v, stamp, true
			return v, nil
		}
	}
	if r.loaded {
		return r.value, nil // an expiring certificate is better than none
	}
	var zero T
	return zero, err
}

func stampOf(files []string) (string, error) {
	stamp := ""
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("cannot read %s: %v", f, errors.Unwrap(err))
		}
		stamp += fmt.Sprintf("%s:%d:%d;", f, fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

func newKeyPair(certFile, keyFile string) *reloading[*tls.Certificate] {
	return &reloading[*tls.Certificate]{files: []string{certFile, keyFile}, load: func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s and %s: %v", certFile, keyFile, err)
		}
		return &cert, nil
	}}
}

func newCertPool(file string) *reloading[*x509.CertPool] {
	return &reloading[*x509.CertPool]{files: []string{file}, load: func() (*x509.CertPool, error) {
		pemBytes, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v", file, errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s holds no PEM certificate", file)
		}
		return pool, nil
	}}
}
