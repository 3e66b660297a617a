package config

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"gopkg.in/yaml.v3"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/delivery"
)

const broker = `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: ns
`

func TestParseValid(t *testing.T) {
	cfg, err := Parse("ok.yaml", []byte(`# a Knative export, status and all
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: ns
  annotations:
    eventing.knative.dev/broker.class: MTChannelBasedBroker
  uid: 1234
  generation: 2
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: config-br-default-channel
    namespace: knative-eventing
  delivery:
    deadLetterSink:
      uri: http://dls.example/
    retry: 4
    backoffDelay: PT1S
    backoffMax: PT30S
status:
  address:
    url: http://broker-ingress.knative-eventing.svc.cluster.local/ns/default
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: orders
  namespace: ns
spec:
  broker: default
  filter:
    attributes:
      type: order.created
  subscriber:
    ref:
      apiVersion: v1
      kind: Service
      name: orders-fn
    uri: /handle
  delivery:
    retry: 2
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: ordered
  namespace: ns
  annotations:
    kafka.eventing.knative.dev/delivery.order: ordered
    switchyard.dev/rate-limit: "50"
spec:
  broker: default
  filters:
    - cesql: "type = 'x'"
  subscriber:
    uri: https://example.com/x
  delivery:
    backoffPolicy: linear
    format: json
    timeout: PT2S
    retryAfterMax: PT1M
---
apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata:
  name: s
spec:
  ingress:
    addr: 127.0.0.1:1234
    maxTTL: 9
  clusterDomain: example.local
  delivery:
    retry: 7
    timeout: PT10S
`))
	if err != nil {
		t.Fatalf("unexpected errors:\n%v", err)
	}
	if cfg.Settings.Addr != "127.0.0.1:1234" || cfg.Settings.MaxTTL != 9 || cfg.Settings.AdminAddr != DefaultAdminAddr {
		t.Errorf("settings: %+v", cfg.Settings)
	}
	if len(cfg.Brokers) != 1 || cfg.Brokers[0].Ref != (router.BrokerRef{Namespace: "ns", Name: "default"}) {
		t.Fatalf("brokers: %+v", cfg.Brokers)
	}
	orders, ordered := cfg.Triggers[0], cfg.Triggers[1]
	if orders.Subscriber != "http://orders-fn.ns.svc.example.local/handle" {
		t.Errorf("subscriber ref resolved to %q", orders.Subscriber)
	}
	// Field-by-field merge: trigger retry 2 over broker retry 4; broker's dead-letter sink and delay
	// survive; timeout from the SwitchyardConfig defaults.
	want := delivery.Policy{Retry: 2, Backoff: delivery.Exponential, Delay: time.Second, BackoffMax: 30 * time.Second, Timeout: 10 * time.Second, DeadLetterSink: "http://dls.example/"}
	if orders.Delivery != want {
		t.Errorf("merged delivery\n got %+v\nwant %+v", orders.Delivery, want)
	}
	want = delivery.Policy{Retry: 4, Backoff: delivery.Linear, Delay: time.Second, BackoffMax: 30 * time.Second, Timeout: 2 * time.Second, RetryAfterMax: time.Minute, DeadLetterSink: "http://dls.example/", Format: delivery.Structured}
	if ordered.Delivery != want {
		t.Errorf("merged delivery\n got %+v\nwant %+v", ordered.Delivery, want)
	}
	if !ordered.Ordered || ordered.Concurrency != DefaultTriggerConcurrency || ordered.RateLimit != 50 { // keys at once per partition
		t.Errorf("ordered trigger: %+v", ordered)
	}
	e := event.New()
	e.SetID("1")
	e.SetSource("/s")
	e.SetType("order.created")
	if !orders.Filter.Match(&e) || ordered.Filter.Match(&e) {
		t.Errorf("filters did not compile as written")
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("d.yaml", []byte(broker+"---\n"+`apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t
  namespace: ns
spec:
  broker: default
  subscriber:
    uri: http://x/
`))
	if err != nil {
		t.Fatal(err)
	}
	want := delivery.Policy{Retry: 10, Backoff: delivery.Exponential, Delay: 200 * time.Millisecond, Timeout: DefaultTimeout}
	if got := cfg.Triggers[0].Delivery; got != want {
		t.Errorf("default delivery %+v, want Knative's cluster default %+v", got, want)
	}
	if b, st := cfg.Brokers[0], cfg.Settings; b.MaxInFlight != 0 || st.MaxInFlightWait != DefaultMaxInFlightWait {
		t.Errorf("max-in-flight %d, wait %s: want no limit and %s", b.MaxInFlight, st.MaxInFlightWait, DefaultMaxInFlightWait)
	}
}

// TestMaxInFlight: the SwitchyardConfig sets every in-memory broker's max-in-flight, and a
// broker's annotation overrides it (0 lifts it).
func TestMaxInFlight(t *testing.T) {
	cfg, err := Parse("m.yaml", []byte(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: s}
spec:
  ingress: {maxInFlight: 500, maxInFlightWait: 250ms}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: plain, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: paced
  namespace: ns
  annotations: {switchyard.dev/max-in-flight: "16"}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: free
  namespace: ns
  annotations: {switchyard.dev/max-in-flight: "0"}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, b := range cfg.Brokers {
		got[b.Ref.Name] = b.MaxInFlight
	}
	if fmt.Sprint(got) != "map[free:0 paced:16 plain:500]" || cfg.Settings.MaxInFlightWait != 250*time.Millisecond {
		t.Errorf("max-in-flight %v, wait %s", got, cfg.Settings.MaxInFlightWait)
	}
}

// TestParseErrors checks exact messages: they are the user interface of a config mistake.
// anyBlock stands in for a component the fixtures configure (the real ones live in sinks and
// test themselves): it takes any block at path.
type anyBlock string

func (a anyBlock) Path() string                { return string(a) }
func (anyBlock) NewSpec() any                  { return &yaml.Node{} }
func (anyBlock) Override(any, *Overrides) bool { return false }
func (anyBlock) Validate(any, Reporter)        {}

var update = flag.Bool("update", false, "rewrite the golden files of testdata/errors from what the loader says now")

// TestErrorFixtures: each testdata/errors/NAME.yaml is a configuration with mistakes, and
// NAME.golden beside it every error the loader must report for it, one per line as validate prints
// them (file:line: field.path: message). go test -run TestErrorFixtures -update rewrites the golden
// files; review their diff.
func TestErrorFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "errors", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			_, err := LoadSources(Sources{Path: file, Components: []Component{anyBlock(KafkaComponentPath)}})
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want configuration errors", err)
			}
			var got strings.Builder
			for _, e := range errs {
				got.WriteString(e.Error() + "\n")
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != string(want) {
				t.Errorf("errors of %s\n got:\n%s\nwant:\n%s", file, got.String(), want)
			}
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a-broker.yaml", broker)
	write("b-trigger.yml", "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  namespace: ns\nspec:\n  broker: default\n  subscriber:\n    uri: http://x/\n")
	write("notes.txt", "not yaml: [")
	write(".hidden.yaml", "garbage: [")
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Files) != 2 || len(cfg.Triggers) != 1 {
		t.Errorf("loaded %v with %d triggers", cfg.Files, len(cfg.Triggers))
	}
	// A cross-file error names the right file.
	write("b-trigger.yml", "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  namespace: other\nspec:\n  broker: default\n  subscriber:\n    uri: http://x/\n")
	_, err = Load(dir)
	if err == nil || err.Error() != filepath.Join(dir, "b-trigger.yml")+":7: spec.broker: broker other/default is not defined in this configuration" {
		t.Errorf("got %v", err)
	}
}

func TestISODuration(t *testing.T) {
	good := map[string]time.Duration{
		"PT0.2S": 200 * time.Millisecond, "PT1S": time.Second, "PT1M30S": 90 * time.Second,
		"PT2H": 2 * time.Hour, "P1D": 24 * time.Hour, "P1DT1H": 25 * time.Hour, "P1W": 7 * 24 * time.Hour, "PT0,5S": 500 * time.Millisecond,
	}
	for s, want := range good {
		if got, err := parseISODuration(s); err != nil || got != want {
			t.Errorf("%s: got %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "P", "PT", "1S", "PT1", "P1M", "P1Y", "PT-1S", "PT1H1D", "PTxS", "P1S"} {
		if _, err := parseISODuration(s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(broker))
	f.Add([]byte(broker + "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  namespace: ns\nspec:\n  broker: default\n  filters:\n    - any:\n      - cesql: \"a = 'b'\"\n  subscriber:\n    uri: http://x/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		var errs Errors
		if err != nil && errors.As(err, &errs) && len(errs) == 0 {
			t.Fatal("empty error list")
		}
	})
}

func TestWebhookSources(t *testing.T) {
	good := broker + `---
apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata: {name: pay, namespace: ns}
spec:
  provider: stripe
  secrets:
    - secretKeyRef: {name: s, key: k}
    - env: OLD
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
  timestampTolerance: 300s
---
apiVersion: sources.knative.dev/v1alpha1
kind: GitHubSource
metadata: {name: gh, namespace: ns}
spec:
  eventTypes: [push]
  ownerAndRepository: acme/shop
  accessToken: {secretKeyRef: {name: gh, key: accessToken}}
  secretToken: {secretKeyRef: {name: gh, key: secretToken}}
  sink: {uri: "http://example.com/hook"}
`
	cfg, err := Parse("w.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Webhooks) != 2 {
		t.Fatalf("webhooks: %+v", cfg.Webhooks)
	}
	pay, gh := cfg.Webhooks[0], cfg.Webhooks[1]
	if pay.Provider != "stripe" || pay.Tolerance != 300*time.Second || pay.DedupWindow != 10*time.Minute || len(pay.Secrets) != 2 ||
		pay.Sink.Broker == nil || *pay.Sink.Broker != (router.BrokerRef{Namespace: "ns", Name: "default"}) {
		t.Errorf("stripe source: %+v", pay)
	}
	if gh.Provider != "github" || gh.Source != "https://github.com/acme/shop" || gh.Sink.URI != "http://example.com/hook" ||
		gh.Secrets[0] != (SecretRef{Name: "gh", Key: "secretToken"}) {
		t.Errorf("GitHubSource: %+v", gh)
	}

	bad := broker + `---
apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata: {name: a, namespace: ns}
spec:
  provider: bitbucket
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: nope}}
---
apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata: {name: b, namespace: ns}
spec:
  provider: generic
  sink: {uri: "http://x/"}
`
	_, err = Parse("w.yaml", []byte(bad))
	want := `w.yaml:11: spec.provider: "bitbucket" is not a provider (github, gitlab, stripe, slack, standardwebhooks, generic)
w.yaml:11: spec.secrets: a bitbucket webhook needs at least one secret to verify requests
w.yaml:12: spec.sink.ref: broker ns/nope is not defined in this configuration
w.yaml:18: spec.generic: the generic provider needs generic.verification (hmac, bearer, or none said explicitly)`
	if err == nil || err.Error() != want {
		t.Errorf("errors\n got: %v\nwant: %s", err, want)
	}
}

func TestKafkaSources(t *testing.T) {
	src := func(apiVersion, extra string) string {
		return broker + "---\napiVersion: " + apiVersion + `
kind: KafkaSource
metadata: {name: ks, namespace: ns}
spec:
  bootstrapServers: [k:9092]
  topics: [orders]
  initialOffset: latest
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
` + extra
	}
	for _, v := range []string{"sources.knative.dev/v1beta1", "switchyard.dev/v1alpha1"} {
		cfg, err := Parse("k.yaml", []byte(src(v, "")))
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		k := cfg.KafkaSources[0]
		if k.Group != "knative-kafka-source-ns-ks" || !k.FromLatest || k.Sink.Broker == nil || k.Topics[0] != "orders" {
			t.Errorf("%s: %+v", v, k)
		}
	}
	// initialOffset defaults to latest, as Knative's (issue #18, item 6): a migrated source must not
	// replay its whole topic; earliest is said explicitly.
	for offset, latest := range map[string]bool{"": true, "  initialOffset: earliest\n": false} {
		doc := strings.Replace(src("sources.knative.dev/v1beta1", offset), "  initialOffset: latest\n", "", 1)
		cfg, err := Parse("k.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.KafkaSources[0].FromLatest; got != latest {
			t.Errorf("initialOffset %q: from latest %v, want %v", offset, got, latest)
		}
	}
	// Knative's spec.delivery (issue #18, item 6): absent means retry for ever; present, resolved
	// over the defaults, the dead-letter sink a URL; a bad field is named with its line.
	if cfg, err := Parse("k.yaml", []byte(src("sources.knative.dev/v1beta1", ""))); err != nil || cfg.KafkaSources[0].Delivery != nil {
		t.Errorf("no spec.delivery: %v, %+v", err, cfg.KafkaSources[0].Delivery)
	}
	cfg, err := Parse("k.yaml", []byte(src("sources.knative.dev/v1beta1", "  delivery:\n    retry: 2\n    backoffDelay: PT0.5S\n    deadLetterSink: {uri: http://dls.example/x}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.KafkaSources[0].Delivery; d == nil || d.Retry != 2 || d.Delay != 500*time.Millisecond || d.DeadLetterSink != "http://dls.example/x" || d.Timeout == 0 {
		t.Errorf("spec.delivery: %+v", d)
	}
	if _, err := Parse("k.yaml", []byte(src("sources.knative.dev/v1beta1", "  delivery:\n    retry: -1\n"))); err == nil || !strings.Contains(err.Error(), "spec.delivery.retry") || !strings.Contains(err.Error(), "k.yaml:") {
		t.Errorf("a negative retry: %v, want an error naming k.yaml's line and spec.delivery.retry", err)
	}
	// Knative's net block: TLS and SASL from Secret keys, the mechanism too.
	cfg, err = Parse("k.yaml", []byte(src("sources.knative.dev/v1beta1", `  net:
    tls:
      enable: true
      caCert: {secretKeyRef: {name: kafka-tls, key: ca.crt}}
    sasl:
      enable: true
      user: {secretKeyRef: {name: kafka-sasl, key: user}}
      password: {secretKeyRef: {name: kafka-sasl, key: password}}
      type: {secretKeyRef: {name: kafka-sasl, key: mechanism}}
`)))
	if err != nil {
		t.Fatal(err)
	}
	sec := cfg.KafkaSources[0].Security
	if sec.TLS == nil || sec.TLS.CA != (SecretRef{Name: "kafka-tls", Key: "ca.crt"}) || !sec.TLS.Cert.IsZero() {
		t.Errorf("TLS: %+v", sec.TLS)
	}
	if a := sec.SASL; a == nil || a.User != (SecretRef{Name: "kafka-sasl", Key: "user"}) || a.MechanismRef == nil || a.MechanismRef.Key != "mechanism" {
		t.Errorf("SASL: %+v", sec.SASL)
	}
	// Turned off (enable: false) means off, whatever else is there; on without a user is an error.
	cfg, err = Parse("k.yaml", []byte(src("sources.knative.dev/v1beta1", "  net:\n    tls: {enable: false}\n")))
	if err != nil || cfg.KafkaSources[0].Security.TLS != nil {
		t.Errorf("tls disabled: %v %+v", err, cfg)
	}
	_, err = Parse("k.yaml", []byte(src("sources.knative.dev/v1beta1", "  net:\n    sasl: {enable: true, password: {secretKeyRef: {name: s, key: p}}}\n")))
	if err == nil || !strings.Contains(err.Error(), "spec.net.sasl.user.secretKeyRef: must name the Secret key") {
		t.Errorf("SASL without user: %v", err)
	}
}

func TestSecretRefRead(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "kafka"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kafka", "password"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := (SecretRef{Name: "kafka", Key: "password"}).Read(dir); err != nil || string(b) != "s3cret" {
		t.Errorf("secretKeyRef: %q %v", b, err)
	}
	t.Setenv("SWITCHYARD_TEST_SECRET", "from-env")
	if b, err := (SecretRef{Env: "SWITCHYARD_TEST_SECRET"}).Read(dir); err != nil || string(b) != "from-env" {
		t.Errorf("env: %q %v", b, err)
	}
	if _, err := (SecretRef{Name: "kafka", Key: "missing"}).Read(dir); err == nil {
		t.Error("a missing key read without error")
	}
}

func TestLoadSourcesDocumentsAndResolver(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "brokers.yaml"), []byte(broker), 0o644); err != nil {
		t.Fatal(err)
	}
	var asked []ObjectRef
	resolve := func(ref ObjectRef) (string, error) {
		asked = append(asked, ref)
		if ref.Name == "missing" {
			return "", errors.New("Service ns/missing not found")
		}
		return "http://fn.example:8080", nil
	}
	trig := func(name, subscriber string) Document {
		return Document{Name: "Trigger ns/" + name, Data: []byte(`{"apiVersion":"eventing.knative.dev/v1","kind":"Trigger",
"metadata":{"name":"` + name + `","namespace":"ns"},"spec":{"broker":"default","subscriber":` + subscriber + `}}`)}
	}
	cfg, err := LoadSources(Sources{Path: dir, ResolveRef: resolve, Documents: []Document{
		trig("by-ref", `{"ref":{"apiVersion":"example.dev/v1","kind":"Function","name":"fn"},"uri":"/in"}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Triggers) != 1 || cfg.Triggers[0].Subscriber != "http://fn.example:8080/in" {
		t.Fatalf("triggers = %+v", cfg.Triggers)
	}
	if len(asked) != 1 || asked[0] != (ObjectRef{APIVersion: "example.dev/v1", Kind: "Function", Namespace: "ns", Name: "fn"}) {
		t.Errorf("resolver asked %+v", asked)
	}

	// Errors name the document, and a document redefining a file's broker is the one in error.
	_, err = LoadSources(Sources{Path: dir, ResolveRef: resolve, Documents: []Document{
		trig("lost", `{"ref":{"apiVersion":"v1","kind":"Service","name":"missing"}}`),
		{Name: "Broker ns/default", Data: []byte(broker)},
	}})
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("want two errors, got %v", err)
	}
	got := map[string]string{}
	for _, e := range errs {
		got[e.File] = e.Path + ": " + e.Msg
	}
	if got["Trigger ns/lost"] != "spec.subscriber.ref: Service ns/missing not found" {
		t.Errorf("resolver error reported as %q", got["Trigger ns/lost"])
	}
	if !strings.Contains(got["Broker ns/default"], "defined twice (first at "+filepath.Join(dir, "brokers.yaml")) {
		t.Errorf("conflict reported as %q", got["Broker ns/default"])
	}

	// Without a resolver, refs keep their file-mode meaning.
	if _, err := LoadSources(Sources{Documents: []Document{{Name: "b", Data: []byte(broker)}, trig("x", `{"ref":{"apiVersion":"example.dev/v1","kind":"Function","name":"fn"}}`)}}); err == nil ||
		!strings.Contains(err.Error(), "cannot resolve a ref to example.dev/v1 Function outside Kubernetes") {
		t.Errorf("no resolver: %v", err)
	}
}

// TestAliasBombIsRefused (issue #16, item 7): a 1.5 KB document whose aliases expand to billions
// of nodes made validate run for minutes (and pinned a core on every reload). It is refused at
// once, naming the file and line; ordinary anchors still work.
func TestAliasBombIsRefused(t *testing.T) {
	// Trigger filters nest (all of all of ...), so the strict walk follows every alias.
	var b strings.Builder
	b.WriteString("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, namespace: ns}\nspec:\n  broker: b\n  subscriber: {uri: \"http://fn\"}\n  filters:\n")
	b.WriteString("    - all: &a0 [" + strings.Repeat("{exact: {type: x}}, ", 8) + "{exact: {type: x}}]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "    - all: &a%d [%s{all: *a%d}]\n", i, strings.Repeat(fmt.Sprintf("{all: *a%d}, ", i-1), 8), i-1)
	}
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "bomb.yaml:") || !strings.Contains(err.Error(), "alias bomb") {
		t.Fatalf("got %v, want an error naming the file and the alias bomb", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing took %s", d)
	}

	shared := `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns}
spec:
  delivery: &retries {retry: 3, backoffDelay: PT1S}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  broker: b
  subscriber: {uri: "http://fn"}
  delivery: {retry: 5}
`
	if _, err := Parse("ok.yaml", []byte(shared)); err != nil {
		t.Fatalf("a document with an anchor: %v", err)
	}
}

// TestAuthRules (issue #16, item 10): public-key JWT verification without an audience accepts any
// token of the issuer (any service account's), so it is a configuration error; a webhook source
// that feeds a protected broker is a warning.
func TestAuthRules(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "jwt.pub")
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := func(jwt string) string {
		return "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  ingress:\n    auth:\n      - brokers: [ns/default]\n        jwt: " + jwt + "\n---\n" + broker
	}
	_, err := Parse("c.yaml", []byte(settings("{issuer: https://k8s, publicKeyFile: "+key+"}")))
	if err == nil || !strings.Contains(err.Error(), "spec.ingress.auth[0].jwt.audiences: must name at least one audience") {
		t.Errorf("public key without audiences: %v", err)
	}
	_, err = Parse("c.yaml", []byte(settings("{issuer: https://k8s, audiences: [sy], publicKeyFile: "+key+", jwksURL: https://k8s/keys}")))
	if err == nil || !strings.Contains(err.Error(), "set one of hmacSecret, publicKeyFile, jwksFile, jwksURL or oidcDiscovery") {
		t.Errorf("two key sources: %v", err)
	}
	_, err = Parse("c.yaml", []byte(settings("{audiences: [sy], oidcDiscovery: true}")))
	if err == nil || !strings.Contains(err.Error(), "jwt.issuer: oidcDiscovery needs the issuer") {
		t.Errorf("discovery without an issuer: %v", err)
	}
	cfg, err := Parse("c.yaml", []byte(settings("{issuer: https://k8s, audiences: [sy], publicKeyFile: "+key+"}")+`---
apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata: {name: hook, namespace: ns}
spec:
  provider: generic
  generic: {verification: none}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "webhook source ns/hook publishes into broker ns/default, which spec.ingress.auth protects") {
		t.Errorf("warnings %v", cfg.Warnings)
	}
}

// TestShortWebhookSecrets (issue #16, item 11): a webhook secret readable at load that is too short
// to verify anything (an empty whsec_ key, a word) is a configuration error.
func TestShortWebhookSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	source := func(provider, file string) string {
		return broker + fmt.Sprintf(`---
apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata: {name: hook, namespace: ns}
spec:
  provider: %s
  secrets: [{file: %s}]
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
`, provider, file)
	}
	for _, c := range []struct{ provider, secret, want string }{
		{"github", "s3cret", "spec.secrets[0]: the secret is 6 bytes; at least 16 are needed"},
		{"standardwebhooks", "whsec_", "spec.secrets[0]: the secret is 0 bytes"},
		{"standardwebhooks", "whsec_c2VjcmV0", "the secret is 6 bytes"},
		{"github", "a-long-enough-secret", ""},
		{"standardwebhooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ""},
	} {
		_, err := Parse("c.yaml", []byte(source(c.provider, write(c.provider+c.secret, c.secret))))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %q: %v, want %q", c.provider, c.secret, err, c.want)
		}
	}
}

// TestKubectlListAndEveryKindSorted (issue #19): `kubectl get brokers,triggers,... -A -o yaml`
// writes a kind: List, which was refused as an unknown kind, and so was everything in a Knative
// GitOps folder that is not a Broker or Trigger. Now a List is read item by item (errors name the
// item), sources.knative.dev/v1 KafkaSource is read, Knative sources and non-eventing objects are
// left alone and listed, and a Trigger may deliver to another Broker of the configuration.
func TestKubectlListAndEveryKindSorted(t *testing.T) {
	data, err := os.ReadFile("testdata/kubectl-get-list.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("all.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Brokers) != 2 || len(cfg.Triggers) != 1 || len(cfg.KafkaSources) != 1 || len(cfg.PingSources) != 1 {
		t.Fatalf("served: %d brokers, %d triggers, %d KafkaSources, %d PingSources; want 2, 1, 1, 1", len(cfg.Brokers), len(cfg.Triggers), len(cfg.KafkaSources), len(cfg.PingSources))
	}
	if got := cfg.Triggers[0].Subscriber; got != "http://127.0.0.1:8080/shop/audit" {
		t.Errorf("a Trigger whose subscriber is Broker shop/audit delivers to %q, want this router's ingress for it", got)
	}
	var sorted []string
	for _, s := range cfg.Skipped {
		sorted = append(sorted, s.Kind)
		if s.Kind == "ApiServerSource" && !strings.Contains(s.Why, "POST /shop/default") {
			t.Errorf("the ApiServerSource's note does not say where its sink must point: %s", s.Why)
		}
	}
	if strings.Join(sorted, " ") != "Service ConfigMap ApiServerSource" {
		t.Errorf("left alone: %v, want Service ConfigMap ApiServerSource", sorted)
	}

	// An error in an item names it, at its line.
	bad := strings.Replace(string(data), "    broker: default\n", "    broker: nosuch\n", 1)
	_, err = Parse("all.yaml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), "all.yaml:42: items[2].spec.broker") {
		t.Errorf("an error inside a List: %v, want it at all.yaml:42, items[2].spec.broker", err)
	}
	// A Broker ref that the configuration does not define is an error, not a guess.
	bad = strings.Replace(string(data), "        name: audit\n", "        name: elsewhere\n", 1)
	if _, err := Parse("all.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "Broker shop/elsewhere is not in this configuration") {
		t.Errorf("a ref to a Broker not configured: %v", err)
	}
}

// TestAdminTraceURL: the console's trace link must be an http(s) URL with a place for the id;
// a mistake names the file, line and field.
func TestAdminTraceURL(t *testing.T) {
	doc := func(u string) []byte {
		return []byte("apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  admin:\n    traceURL: \"" + u + "\"\n")
	}
	cfg, err := Parse("t.yaml", doc("http://jaeger:16686/trace/{traceId}"))
	if err != nil || cfg.Settings.AdminTraceURL != "http://jaeger:16686/trace/{traceId}" {
		t.Fatalf("a good traceURL: %v, %q", err, cfg.Settings.AdminTraceURL)
	}
	for u, want := range map[string]string{
		"http://jaeger:16686/trace/": `t.yaml:6: spec.admin.traceURL: "http://jaeger:16686/trace/" has no {traceId}`,
		"jaeger/{traceId}":           `t.yaml:6: spec.admin.traceURL: "jaeger/{traceId}" is not an http(s) URL`,
	} {
		if _, err := Parse("t.yaml", doc(u)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("traceURL %q: %v, want %s", u, err, want)
		}
	}
}

// TestArchiveAnnotations: an in-memory broker archives in Cassandra for a retention; a
// Kafka-class broker's topic is its archive; mistakes name the file, line and annotation.
func TestArchiveAnnotations(t *testing.T) {
	settings := "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  kafka: {bootstrapServers: [\"127.0.0.1:9092\"]}\n%s---\n"
	broker := func(class, ann string) string {
		return "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: ns\n  annotations:\n    eventing.knative.dev/broker.class: " + class + "\n" + ann
	}
	load := func(results, doc string) (*Config, error) {
		return LoadSources(Sources{Documents: []Document{{Name: "a.yaml", Data: []byte(fmt.Sprintf(settings, results) + doc)}},
			Components: []Component{anyBlock("kafka"), anyBlock("results.cassandra")}})
	}
	cassandra := "  results: {cassandra: {hosts: [\"127.0.0.1\"]}}\n"
	cfg, err := load(cassandra, broker("Switchyard", "    switchyard.dev/archive-retention: 168h\n    switchyard.dev/archive-filter: \"type LIKE 'order.%'\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Brokers[0].Archive; a == nil || a.Retention != 168*time.Hour || a.Filter == nil {
		t.Fatalf("archive %+v", a)
	}
	cfg, err = load("", broker("Kafka", "    switchyard.dev/archive-filter: \"type = 'x'\"\n"))
	if err != nil || cfg.Brokers[0].Archive == nil || cfg.Brokers[0].Archive.Retention != 0 {
		t.Fatalf("a Kafka-class broker's archive filter: %v", err)
	}
	for name, c := range map[string]struct{ results, class, ann, want string }{
		"no cassandra":   {"", "Switchyard", "    switchyard.dev/archive-retention: 24h\n", "switchyard.dev/archive-retention keeps the events in Cassandra: set spec.results.cassandra"},
		"kafka":          {"", "Kafka", "    switchyard.dev/archive-retention: 24h\n", "switchyard.dev/archive-retention applies to in-memory brokers: a Kafka-class broker's topic is its archive"},
		"short":          {cassandra, "Switchyard", "    switchyard.dev/archive-retention: 5m\n", `switchyard.dev/archive-retention must be a duration of at least 1h (e.g. 168h), got "5m"`},
		"filter alone":   {cassandra, "Switchyard", "    switchyard.dev/archive-filter: \"type = 'x'\"\n", "switchyard.dev/archive-filter needs switchyard.dev/archive-retention"},
		"bad expression": {cassandra, "Switchyard", "    switchyard.dev/archive-retention: 24h\n    switchyard.dev/archive-filter: \"type = \"\n", "switchyard.dev/archive-filter:"},
	} {
		_, err := load(c.results, broker(c.class, c.ann))
		if err == nil || !strings.Contains(err.Error(), "a.yaml:") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %s", name, err, c.want)
		}
	}
}

// delivery.backoffMax (Knative 1.22, alpha) must be a positive ISO 8601 duration.
func TestBackoffMaxIsADuration(t *testing.T) {
	for value, want := range map[string]string{
		"PT0S": "b.yaml:8: spec.delivery.backoffMax: must be longer than zero",
		"soon": "b.yaml:8: spec.delivery.backoffMax:",
	} {
		_, err := Parse("b.yaml", []byte("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n  namespace: ns\nspec:\n  delivery:\n    backoffMax: "+value+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("backoffMax %s: %v, want %q", value, err, want)
		}
	}
}
