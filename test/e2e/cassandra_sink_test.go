package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// keyspaceSession connects to the test's Cassandra and creates keyspace there; the session ends
// with the test.
func keyspaceSession(t *testing.T, addr, keyspace string) *gocql.Session {
	t.Helper()
	cluster := gocql.NewCluster(addr)
	cluster.ProtoVersion, cluster.DisableInitialHostLookup, cluster.Timeout = 4, true, 10*time.Second
	session, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	if err := session.Query(`CREATE KEYSPACE ` + keyspace + ` WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`).Exec(); err != nil {
		t.Fatal(err)
	}
	return session
}

// TestCassandraSinkPipeline (issue #20): webhook (and a Kafka record, through a KafkaSource) →
// broker → the demo function (switchyard function --reply-type) → its reply → a Trigger on the
// reply's type → a CassandraSink: the reply lands as a typed row (every CQL type the sink writes),
// from one configuration file, in the real Cassandra.
// A redelivery overwrites rather than duplicates; a value the table cannot take is dead-lettered
// with the column and the reason.
func TestCassandraSinkPipeline(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	keyspace := fmt.Sprintf("sy_e2e_sink_%d", time.Now().UnixNano())
	session := keyspaceSession(t, cassandraAddr, keyspace)

	function := freePort(t)
	fn := exec.Command(binary, "function", "--addr", function, "--reply-type", "order.stored")
	var fnOut bytes.Buffer
	fn.Stdout, fn.Stderr = &fnOut, &fnOut
	if err := fn.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fn.Process.Kill(); _ = fn.Wait() })
	dls := newSubscriber(t, nil)

	manifests := brokerYAML("default") + shopWebhookYAML + triggerYAML("process", "  broker: default\n  filter:\n    attributes: {type: order.created}\n  subscriber:\n    uri: http://"+function+"/\n") +
		triggerYAML("store", "  broker: default\n  filter:\n    attributes: {type: order.stored}\n  subscriber:\n    ref: {apiVersion: switchyard.dev/v1alpha1, kind: CassandraSink, name: orders}\n  delivery:\n    retry: 1\n    backoffDelay: PT0.1S\n    deadLetterSink: {uri: \""+dls.URL+"\"}\n") +
		fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: CassandraSink
metadata: {name: orders, namespace: default}
spec:
  keyspace: %s
  table: orders
  consistency: ONE
  ttl: 24h
  columns:
    order_id: data.order.id
    event_id: id
    event_type: type
    qty: data.order.qty
    total_qty: data.order.qty
    price: data.order.price
    weight: data.order.weight
    ratio: data.order.ratio
    paid: data.order.paid
    tags: data.order.tags
    labels: data.order.tags
    attrs: data.order.attrs
    placed: data.order.placed
    ref: data.order.ref
    payload: data
    raw: event
    note: data.order.note
    received: knativearrivaltime
  optional: [note]
  createTable:
    partitionKey: [order_id]
    columns:
      order_id: text
      event_id: text
      event_type: text
      qty: int
      total_qty: bigint
      price: decimal
      weight: double
      ratio: float
      paid: boolean
      tags: list<text>
      labels: set<text>
      attrs: map<text, text>
      placed: timestamp
      ref: uuid
      payload: blob
      raw: text
      note: text
      received: timestamp
---
`, keyspace)
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-sink-%d", time.Now().UnixNano())
	manifests += kafkaSourceYAML("orders-topic", kafka, topic)
	spec := fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %s\n", cassandraAddr, keyspace, t.TempDir())
	r := startRouterIn(t, t.TempDir(), manifests, "", spec)

	order := func(id, qty string) string {
		return fmt.Sprintf(`{"kind":"order.created","order":{"id":%q,"qty":%s,"price":"19.99","weight":1.25,"ratio":0.5,"paid":true,`+
			`"tags":["gift","rush"],"attrs":{"color":"red"},"placed":"2026-12-01T10:00:00Z","ref":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}}`, id, qty)
	}
	delivery := 0
	post := func(body string) {
		t.Helper()
		delivery++
		req, _ := http.NewRequest(http.MethodPost, r.Ingress+"/webhooks/default/shop", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Delivery-Id", fmt.Sprintf("delivery-%d", delivery))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("webhook answered %d", resp.StatusCode)
		}
	}
	rowCount := func(id string) int {
		var n int
		_ = session.Query(`SELECT count(*) FROM `+keyspace+`.orders WHERE order_id = ?`, id).Scan(&n)
		return n
	}
	post(order("o-1", "3"))
	deadline := time.Now().Add(20 * time.Second)
	for rowCount("o-1") != 1 {
		if time.Now().After(deadline) {
			_, tr := r.get(t, "/v1/triggers")
			_, fo := r.get(t, "/v1/triggers/default/store/outcomes")
			_, po := r.get(t, "/v1/triggers/default/process/outcomes")
			var why []string
			for _, d := range dls.requests() {
				why = append(why, d.Header.Get("Ce-Knativeerrordata"))
			}
			t.Fatalf("no row for o-1:\n%s\n%s\n%s\ndead-lettered: %q", tr, fo, po, why)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var (
		eventID, eventType, raw, note string
		qty                           int
		totalQty                      int64
		price                         *inf.Dec
		weight                        float64
		ratio                         float32
		paid                          bool
		tags                          []string
		labels                        []string
		attrs                         map[string]string
		placed, received              time.Time
		ref                           gocql.UUID
		payload                       []byte
	)
	if err := session.Query(`SELECT event_id, event_type, qty, total_qty, price, weight, ratio, paid, tags, labels, attrs, placed, ref, payload, raw, note, received FROM `+
		keyspace+`.orders WHERE order_id = 'o-1'`).Scan(&eventID, &eventType, &qty, &totalQty, &price, &weight, &ratio, &paid, &tags, &labels, &attrs, &placed, &ref, &payload, &raw, &note, &received); err != nil {
		t.Fatal(err)
	}
	if eventType != "order.stored" || eventID == "" || eventID == "delivery-1" {
		t.Errorf("the row is not the function's reply: event %q of type %q", eventID, eventType)
	}
	if qty != 3 || totalQty != 3 || price.String() != "19.99" || weight != 1.25 || ratio != 0.5 || !paid ||
		strings.Join(tags, ",") != "gift,rush" || strings.Join(labels, ",") != "gift,rush" || attrs["color"] != "red" ||
		!placed.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) || ref.String() != "6ba7b810-9dad-11d1-80b4-00c04fd430c8" ||
		!bytes.Contains(payload, []byte(`"o-1"`)) || !strings.Contains(raw, `"specversion":"1.0"`) || note != "" || received.IsZero() {
		t.Errorf("typed row: qty %d %d price %v weight %v ratio %v paid %v tags %v labels %v attrs %v placed %v ref %v payload %q raw %q note %q received %v",
			qty, totalQty, price, weight, ratio, paid, tags, labels, attrs, placed, ref, payload, raw, note, received)
	}
	var ttl int
	if err := session.Query(`SELECT TTL(qty) FROM ` + keyspace + `.orders WHERE order_id = 'o-1'`).Scan(&ttl); err != nil || ttl <= 0 || ttl > 24*3600 {
		t.Errorf("row TTL %d (%v), want the sink's 24h", ttl, err)
	}

	// The provider sends the same order again, as a new delivery: it goes through the function
	// again, and still makes one row (the key comes from the mapping, the row is overwritten).
	post(order("o-1", "3"))
	waitFor(t, 10*time.Second, func() bool {
		_, m := r.get(t, "/metrics")
		return metricValue(m, `switchyard_cassandra_sink_rows_total{namespace_name="default",result="written",sink_name="orders"}`) >= 2
	})
	if n := rowCount("o-1"); n != 1 {
		t.Errorf("%d rows for o-1 after a redelivery, want 1", n)
	}

	// A Kafka record (a CloudEvent in the structured mode) takes the same way to its row.
	produce(t, kafka, &sarama.ProducerMessage{Topic: topic,
		Value:   sarama.StringEncoder(`{"specversion":"1.0","id":"k-1","source":"/erp","type":"order.created","datacontenttype":"application/json","data":` + order("o-3", "7") + `}`),
		Headers: []sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte("application/cloudevents+json")}}})
	waitFor(t, 30*time.Second, func() bool { return rowCount("o-3") == 1 })
	var kqty int
	if err := session.Query(`SELECT qty FROM ` + keyspace + `.orders WHERE order_id = 'o-3'`).Scan(&kqty); err != nil || kqty != 7 {
		t.Errorf("the Kafka record's row: qty %d (%v)", kqty, err)
	}

	// A quantity the int column cannot take: 400 from the sink, not retried, dead-lettered with why.
	post(order("o-2", `"lots"`))
	got := dls.waitFor(t, 1, 10*time.Second)
	reason, _ := base64.StdEncoding.DecodeString(got[0].Header.Get("Ce-Knativeerrordata"))
	if !strings.Contains(string(reason), `column qty (int) from data.order.qty: "lots" is not a whole number`) {
		t.Errorf("dead-letter reason %q, want the column, the path and why", reason)
	}
	var outcomes string
	waitFor(t, 5*time.Second, func() bool {
		_, outcomes = r.get(t, "/v1/triggers/default/store/outcomes?failed=true")
		return strings.Contains(outcomes, "dead-lettered")
	})
	if !strings.Contains(outcomes, `"attempts": 1,`) || !strings.Contains(outcomes, `"lastCode": 400`) {
		t.Errorf("a 400 from the sink must not be retried: %s", outcomes)
	}
	if code := got[0].Header.Get("Ce-Knativeerrorcode"); code != "400" {
		t.Errorf("knativeerrorcode %q, want 400", code)
	}
	if n := rowCount("o-2"); n != 0 {
		t.Errorf("a rejected event left %d rows", n)
	}
}

// TestCassandraSinkMistakes: a bad mapping is a configuration error at its file, line and field;
// a table that does not match the mapping keeps the sink unready (503 naming the field) rather
// than writing half rows.
func TestCassandraSinkMistakes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sink.yaml")
	doc := `apiVersion: switchyard.dev/v1alpha1
kind: CassandraSink
metadata: {name: orders, namespace: default}
spec:
  hosts: [127.0.0.1:9042]
  keyspace: shop
  table: orders
  columns:
    order_id: data..id
    qty: data.qty
  optional: [nope]
  ttl: 10ms
`
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "validate", cfg).CombinedOutput()
	for _, want := range []string{"sink.yaml:9: spec.columns.order_id", "sink.yaml:11: spec.optional[0]: \"nope\" is not one of columns", "sink.yaml:12: spec.ttl"} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("validate: %v\n%s\nwant %q", err, out, want)
		}
	}

	cassandraAddr := testenv.Cassandra(t)
	keyspace := fmt.Sprintf("sy_e2e_sinkbad_%d", time.Now().UnixNano())
	session := keyspaceSession(t, cassandraAddr, keyspace)
	if err := session.Query(`CREATE TABLE ` + keyspace + `.orders (order_id text PRIMARY KEY, qty text)`).Exec(); err != nil {
		t.Fatal(err)
	}
	manifests := fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: CassandraSink
metadata: {name: orders, namespace: default}
spec:
  hosts: [%s]
  keyspace: %s
  table: orders
  consistency: ONE
  columns:
    order_id: data.id
    qty: data.qty
  createTable:
    columns: {order_id: text, qty: int}
    partitionKey: [order_id]
---
`, cassandraAddr, keyspace)
	r := startRouter(t, manifests, "")
	var code int
	var body string
	waitFor(t, 15*time.Second, func() bool {
		code, _, body = r.send(t, "/sinks/cassandra/default/orders", ceRequest{Headers: map[string]string{
			"Ce-Specversion": "1.0", "Ce-Id": "x", "Ce-Type": "t", "Ce-Source": "/s", "Content-Type": "application/json"}, Body: `{"id":"o","qty":1}`})
		return strings.Contains(body, "spec.createTable.columns.qty")
	})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "declared int, but the table's column is text") {
		t.Errorf("a table that does not match: %d %s", code, body)
	}
}
