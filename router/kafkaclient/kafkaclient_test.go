package kafkaclient

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/switchyard-events/switchyard/router/secret"
	"github.com/switchyard-events/switchyard/test/testenv"
)

// writeSecret lays a value out as a mounted Kubernetes Secret key: {dir}/{name}/{key}.
func writeSecret(t *testing.T, dir, name, key, value string) secret.Ref {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, key), []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret.Ref{Name: name, Key: key}
}

// connect opens a cluster admin with the security given and lists topics: a real round trip
// through TLS and the SASL handshake.
func connect(addr string, sec Security, secretsDir string) error {
	c, err := Config("switchyard-test", sec, secretsDir)
	if err != nil {
		return err
	}
	c.Metadata.Retry.Max = 0
	admin, err := sarama.NewClusterAdmin([]string{addr}, c)
	if err != nil {
		return err
	}
	defer admin.Close()
	_, err = admin.ListTopics()
	return err
}

func TestClientConfigAgainstRealSASLSSL(t *testing.T) {
	addr, caFile := testenv.KafkaSecure(t)
	dir := t.TempDir()
	user := writeSecret(t, dir, "kafka-sasl", "user", testenv.KafkaUser)
	pass := writeSecret(t, dir, "kafka-sasl", "password", testenv.KafkaPassword)
	wrong := writeSecret(t, dir, "kafka-sasl", "wrong", "not-the-password")
	tlsOn := &TLS{CA: secret.Ref{File: caFile}}

	for _, mech := range []string{"PLAIN", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			sec := Security{TLS: tlsOn, SASL: &SASL{Mechanism: mech, User: user, Password: pass}}
			if err := connect(addr, sec, dir); err != nil {
				t.Fatalf("TLS + SASL %s with the right password: %v", mech, err)
			}
			sec.SASL.Password = wrong
			err := connect(addr, sec, dir)
			if err == nil || !errors.Is(err, sarama.ErrSASLAuthenticationFailed) && !strings.Contains(err.Error(), "authentication") {
				t.Errorf("SASL %s with a wrong password: %v, want an authentication failure", mech, err)
			}
		})
	}
	t.Run("mechanism from a secret", func(t *testing.T) {
		mech := writeSecret(t, dir, "kafka-sasl", "type", "scram-sha-512")
		sec := Security{TLS: tlsOn, SASL: &SASL{MechanismRef: &mech, User: user, Password: pass}}
		if err := connect(addr, sec, dir); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		// Without the test CA the self-signed certificate must be refused: TLS really verifies.
		sec := Security{TLS: &TLS{}, SASL: &SASL{Mechanism: "PLAIN", User: user, Password: pass}}
		if err := connect(addr, sec, dir); err == nil {
			t.Fatal("connected to a server whose certificate no trusted CA signed")
		}
	})
	t.Run("missing secret", func(t *testing.T) {
		sec := Security{SASL: &SASL{Mechanism: "PLAIN", User: user, Password: secret.Ref{Name: "nope", Key: "password"}}}
		if _, err := Config("x", sec, dir); err == nil || !strings.Contains(err.Error(), "kafka SASL: password") {
			t.Errorf("missing password secret: %v", err)
		}
	})
}
