package tlsfiles

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// serve runs a TLS listener with cfg that completes handshakes; it returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("x"))
			}()
		}
	}()
	return ln.Addr().String()
}

// dial completes a handshake and returns the serial of the server's certificate.
func dial(addr string, cfg *tls.Config) (int64, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err != nil { // a refused client certificate shows here in TLS 1.3
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestServerCertificateIsReloaded: a certificate replaced on disk is served from the next
// handshake on, without restarting the listener.
func TestServerCertificateIsReloaded(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewAuthority(t, "ca")
	certFile, keyFile := ca.Issue(t, dir, "server", 100)
	cfg, err := ServerConfig(Server{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	client, err := ClientConfig(Client{CAPEM: ca.PEM, SystemRoots: true})
	if err != nil {
		t.Fatal(err)
	}
	if serial, err := dial(addr, client); err != nil || serial != 100 {
		t.Fatalf("first certificate: serial %d, %v", serial, err)
	}
	ca.Issue(t, dir, "server", 200)
	time.Sleep(1100 * time.Millisecond) // files are looked at again at most once a second
	if serial, err := dial(addr, client); err != nil || serial != 200 {
		t.Fatalf("after renewal: serial %d, %v", serial, err)
	}
	if _, err := ServerConfig(Server{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: keyFile}); err == nil {
		t.Error("a missing certificate file is not reported")
	}
}

// TestMutualTLS: with a client CA, a client without a certificate (or with one of another CA) is
// refused, and one with a certificate of that CA gets through; a client's own CA PEM is trusted.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := testenv.NewAuthority(t, "server-ca"), testenv.NewAuthority(t, "client-ca"), testenv.NewAuthority(t, "other-ca")
	certFile, keyFile := serverCA.Issue(t, dir, "server", 1)
	caFile := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(caFile, clientCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Server{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	if _, err := dial(addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Error("a client without a certificate got through")
	}
	cf, kf := otherCA.Issue(t, t.TempDir(), "stranger", 2)
	stranger, _ := ClientConfig(Client{CAPEM: serverCA.PEM, CertFile: cf, KeyFile: kf})
	if _, err := dial(addr, stranger); err == nil {
		t.Error("a client certificate of another CA got through")
	}
	cf, kf = clientCA.Issue(t, t.TempDir(), "friend", 3)
	friend, err := ClientConfig(Client{CAPEM: serverCA.PEM, CertFile: cf, KeyFile: kf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, friend); err != nil {
		t.Errorf("a client certificate of the trusted CA: %v", err)
	}
	untrusting, _ := ClientConfig(Client{CertFile: cf, KeyFile: kf})
	if _, err := dial(addr, untrusting); err == nil {
		t.Error("a client that does not trust the server's CA connected")
	}
}
