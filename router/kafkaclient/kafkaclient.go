// Package kafkaclient builds the sarama configuration every Kafka client of Switchyard starts from:
// the broker log's (sinks/kafka) and KafkaSource's (sources/kafka). It lives apart from both so
// that a source does not import a sink for its client settings.
package kafkaclient

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/xdg-go/scram"

	"github.com/switchyard-events/switchyard/router/secret"
	"github.com/switchyard-events/switchyard/router/tlsfiles"
)

func init() {
	// sarama records every request's size and latency in go-metrics histograms unless this global
	// says not to. Nothing reads them (Switchyard exports its own metrics, docs/admin-api.md), and
	// under a Kafka-class broker's load they took about 3 % of the router's CPU.
	metrics.UseNilMetrics = true
}

// Security is how a Kafka client encrypts and authenticates; the zero value is plaintext without
// SASL. Secrets are named, not held: they are read at each connection, so a rotated Secret applies
// without a restart.
type Security struct {
	TLS  *TLS
	SASL *SASL
}

// TLS is a TLS client configuration; unset refs mean the system's roots and no client certificate.
type TLS struct {
	CA, Cert, Key      secret.Ref
	ServerName         string
	InsecureSkipVerify bool
}

// SASL is a SASL login.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; MechanismRef, when set instead, names a
	// secret holding it (KafkaSource's net.sasl.type).
	Mechanism      string
	MechanismRef   *secret.Ref
	User, Password secret.Ref
}

// Mechanisms are the SASL mechanisms Switchyard speaks.
var Mechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// Config is the sarama configuration every Kafka client of Switchyard starts from: protocol
// version, dial timeout, TLS and SASL. Secrets are read now, so a rotated Secret applies from the
// next connection on.
func Config(clientID string, sec Security, secretsDir string) (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.Version = sarama.V2_8_0_0
	c.ClientID = clientID
	c.Net.DialTimeout = 2 * time.Second
	if t := sec.TLS; t != nil {
		tc, err := tlsConfig(t, secretsDir)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS: %w", err)
		}
		c.Net.TLS.Enable, c.Net.TLS.Config = true, tc
	}
	if a := sec.SASL; a != nil {
		if err := saslConfig(c, a, secretsDir); err != nil {
			return nil, fmt.Errorf("kafka SASL: %w", err)
		}
	}
	return c, nil
}

func tlsConfig(t *TLS, secretsDir string) (*tls.Config, error) {
	c := tlsfiles.Client{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	var err error
	if !t.CA.IsZero() {
		if c.CAPEM, err = t.CA.Read(secretsDir); err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}
	}
	if !t.Cert.IsZero() {
		if c.CertPEM, err = t.Cert.Read(secretsDir); err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		if c.KeyPEM, err = t.Key.Read(secretsDir); err != nil {
			return nil, fmt.Errorf("client key: %w", err)
		}
	}
	return tlsfiles.ClientConfig(c)
}

func saslConfig(c *sarama.Config, a *SASL, secretsDir string) error {
	mech := a.Mechanism
	if a.MechanismRef != nil {
		b, err := a.MechanismRef.Read(secretsDir)
		if err != nil {
			return fmt.Errorf("mechanism: %w", err)
		}
		mech = strings.ToUpper(strings.TrimSpace(string(b)))
	}
	if !slices.Contains(Mechanisms, mech) {
		return fmt.Errorf("mechanism %q is not one of %s", mech, strings.Join(Mechanisms, ", "))
	}
	user, err := a.User.Read(secretsDir)
	if err != nil {
		return fmt.Errorf("user: %w", err)
	}
	pass, err := a.Password.Read(secretsDir)
	if err != nil {
		return fmt.Errorf("password: %w", err)
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.User, c.Net.SASL.Password = string(user), string(pass)
	c.Net.SASL.Mechanism = sarama.SASLMechanism(mech)
	switch mech {
	case "SCRAM-SHA-256":
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case "SCRAM-SHA-512":
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	}
	return nil
}

// scramClient adapts xdg-go/scram's conversation to sarama's SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	client, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = client.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }

// DurableProducer sets c up for producers whose acknowledgement is a promise: acks=all (every
// in-sync replica has the record), idempotent (a retry inside the producer does not write it
// twice), and short bounds on metadata lookups, retries and the broker's wait, so that an
// unavailable Kafka is answered within seconds rather than held. Keyless records stick to a
// partition for a moment (NewStickyPartitioner), so that concurrent requests reach Kafka batched.
func DurableProducer(c *sarama.Config) {
	c.Producer.Partitioner = NewStickyPartitioner
	c.Metadata.Retry.Max = 1
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 3
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Timeout = 5 * time.Second
}
