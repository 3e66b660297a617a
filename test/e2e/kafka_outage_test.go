package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// privateKafka is a Kafka of this test's own, started by test/infra/infra.sh on free ports, so an
// outage of it disturbs no other test.
type privateKafka struct {
	t    *testing.T
	env  []string
	Addr string
}

func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	testenv.Kafka(t) // the infrastructure is usable here (skips or fails as the other Kafka tests do)
	port := func() string {
		_, p, _ := net.SplitHostPort(freePort(t))
		return p
	}
	k := &privateKafka{t: t}
	plain := port()
	k.env = append(os.Environ(), "INFRA_ONLY=kafka", "SWITCHYARD_INFRA_DIR="+t.TempDir(),
		"KAFKA_PORT="+plain, "KAFKA_CONTROLLER_PORT="+port(), "KAFKA_SECURE_PORT="+port())
	k.Addr = "127.0.0.1:" + plain
	k.infra("up")
	t.Cleanup(func() { k.infra("down") })
	return k
}

func (k *privateKafka) infra(cmd string) {
	k.t.Helper()
	c := exec.Command(filepath.Join("..", "infra", "infra.sh"), cmd)
	c.Env = k.env
	if out, err := c.CombinedOutput(); err != nil {
		k.t.Fatalf("infra.sh %s: %v\n%s", cmd, err, out)
	}
}

// TestKafkaOutageAndRecovery: with its Kafka stopped, a Kafka-class broker answers 503 (never a
// 202 it cannot keep, never a 500), and once Kafka is back it accepts and delivers again without a
// restart; every event that got a 202 is delivered.
func TestKafkaOutageAndRecovery(t *testing.T) {
	kafka := startPrivateKafka(t)
	sub := newSubscriber(t, nil)
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", "e2e-outage")+triggerYAML("all", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 2\n", kafka.Addr))

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
