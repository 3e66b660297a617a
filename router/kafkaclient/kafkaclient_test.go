package kafkaclient

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/test/testenv"
)

// writeSecret lays a value out as a mounted Kubernetes Secret key: {dir}/{name}/{key}.
func writeSecret(t *testing.T, dir, name, key, value string) config.SecretRef {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, key), []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.SecretRef{Name: name, Key: key}
}

// connect opens a cluster admin with the security given and lists topics: a real round trip
// through TLS and the SASL handshake.
func connect(addr string, sec config.KafkaSecurity, secretsDir string) error {
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
	tlsOn := &config.KafkaTLS{CA: config.SecretRef{File: caFile}}

	for _, mech := range []string{"PLAIN", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			sec := config.KafkaSecurity{TLS: tlsOn, SASL: &config.KafkaSASL{Mechanism: mech, User: user, Password: pass}}
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
		sec := config.KafkaSecurity{TLS: tlsOn, SASL: &config.KafkaSASL{MechanismRef: &mech, User: user, Password: pass}}
		if err := connect(addr, sec, dir); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		// Without the test CA the self-signed certificate must be refused: TLS really verifies.
		sec := config.KafkaSecurity{TLS: &config.KafkaTLS{}, SASL: &config.KafkaSASL{Mechanism: "PLAIN", User: user, Password: pass}}
		if err := connect(addr, sec, dir); err == nil {
			t.Fatal("connected to a server whose certificate no trusted CA signed")
		}
	})
	t.Run("missing secret", func(t *testing.T) {
		sec := config.KafkaSecurity{SASL: &config.KafkaSASL{Mechanism: "PLAIN", User: user, Password: config.SecretRef{Name: "nope", Key: "password"}}}
		if _, err := Config("x", sec, dir); err == nil || !strings.Contains(err.Error(), "kafka SASL: password") {
			t.Errorf("missing password secret: %v", err)
		}
	})
}
