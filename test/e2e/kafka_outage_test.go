package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// privateInfra is a Kafka and/or a Cassandra of this test's own, started by test/infra/infra.sh on
// free ports in a directory of the test's, so an outage, a pause or a restart of it disturbs no
// other test. infra runs infra.sh's commands on it (stop, start, pause, resume).
type privateInfra struct {
	t                *testing.T
	env              []string
	Kafka, Cassandra string // addresses of what was started
}

// startPrivateInfra starts servers ("kafka", "cassandra" or both) and stops them when t ends.
func startPrivateInfra(t *testing.T, servers ...string) *privateInfra {
	t.Helper()
	testenv.Kafka(t) // the infrastructure is usable here (skips or fails as the other tests do)
	port := func() string {
		_, p, _ := net.SplitHostPort(freePort(t))
		return p
	}
	p := &privateInfra{t: t}
	kafka, cassandra := port(), port()
	p.env = append(os.Environ(), "INFRA_ONLY="+strings.Join(servers, " "), "SWITCHYARD_INFRA_DIR="+t.TempDir(),
		"KAFKA_PORT="+kafka, "KAFKA_CONTROLLER_PORT="+port(), "KAFKA_SECURE_PORT="+port(),
		"CASSANDRA_PORT="+cassandra, "CASSANDRA_STORAGE_PORT="+port())
	for _, s := range servers {
		switch s {
		case "kafka":
			p.Kafka = "127.0.0.1:" + kafka
		case "cassandra":
			p.Cassandra = "127.0.0.1:" + cassandra
		default:
			t.Fatalf("unknown server %q", s)
		}
	}
	p.infra("up")
	t.Cleanup(func() {
		if p.Cassandra != "" {
			_, _ = p.run("resume", "INFRA_ONLY=cassandra") // a paused server takes SIGTERM only once it runs again
		}
		p.infra("down")
	})
	return p
}

func startPrivateKafka(t *testing.T) *privateInfra { return startPrivateInfra(t, "kafka") }

func (p *privateInfra) infra(cmd string) {
	p.t.Helper()
	if out, err := p.run(cmd); err != nil {
		p.t.Fatalf("infra.sh %s: %v\n%s", cmd, err, out)
	}
}

// only runs an infra.sh command on one of the servers.
func (p *privateInfra) only(server, cmd string) {
	p.t.Helper()
	if out, err := p.run(cmd, "INFRA_ONLY="+server); err != nil {
		p.t.Fatalf("infra.sh %s (%s): %v\n%s", cmd, server, err, out)
	}
}

func (p *privateInfra) run(cmd string, env ...string) ([]byte, error) {
	c := exec.Command(filepath.Join("..", "infra", "infra.sh"), cmd)
	c.Env = append(append([]string(nil), p.env...), env...) // a later INFRA_ONLY wins
	return c.CombinedOutput()
}

// TestKafkaOutageAndRecovery: with its Kafka stopped, a Kafka-class broker answers 503 (never a
// 202 it cannot keep, never a 500), and once Kafka is back it accepts and delivers again without a
// restart; every event that got a 202 is delivered.
func TestKafkaOutageAndRecovery(t *testing.T) {
	kafka := startPrivateKafka(t)
	sub := newSubscriber(t, nil)
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", "e2e-outage")+triggerYAML("all", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 2\n", kafka.Kafka))

	accepted := map[string]bool{}
	n := 0
	send := func() int {
		n++
		id := fmt.Sprintf("o-%d", n)
		code, _, body := r.send(t, "/default/durable", binaryEvent(id, "t"))
		switch code {
		case 202:
			accepted[id] = true
		case 503:
		default:
			t.Fatalf("event %s: %d %s; want 202 or 503", id, code, body)
		}
		return code
	}
	for range 10 {
		if code := send(); code != 202 {
			t.Fatalf("before the outage: %d", code)
		}
	}
	sub.waitFor(t, 10, 30*time.Second)

	kafka.infra("stop")
	saw503 := false
	for deadline := time.Now().Add(20 * time.Second); !saw503 && time.Now().Before(deadline); {
		saw503 = send() == 503
	}
	if !saw503 {
		t.Fatal("no 503 within 20s of Kafka stopping")
	}
	for range 3 { // and it keeps saying so
		if code := send(); code != 503 {
			t.Errorf("during the outage: %d, want 503", code)
		}
	}

	kafka.infra("start")
	back := time.Now()
	recovered := 0
	for deadline := time.Now().Add(60 * time.Second); recovered < 10 && time.Now().Before(deadline); {
		if send() == 202 {
			recovered++
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if recovered < 10 {
		t.Fatalf("60s after Kafka came back, only %d events accepted", recovered)
	}
	t.Logf("accepting again %.1fs after Kafka was ready; %d events sent, %d accepted", time.Since(back).Seconds(), n, len(accepted))
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]bool{}
		for _, rq := range sub.requests() {
			got[rq.Header.Get("Ce-Id")] = true
		}
		missing := 0
		for id := range accepted {
			if !got[id] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted events not delivered 60s after recovery", missing, len(accepted))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
