package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

// Webhook providers.
var webhookProviders = map[string]bool{"github": true, "gitlab": true, "stripe": true, "slack": true, "standardwebhooks": true, "generic": true}

// compileWebhooks validates WebhookSource and GitHubSource documents.
// MinWebhookSecretBytes is the shortest webhook secret used (for Standard Webhooks, the key a
// whsec_ secret decodes to): a shorter one, an empty whsec_ key or a password-like word, is
// guessable, so it would verify nothing. Shorter secrets are configuration errors where they can
// be read at load, and are never used to verify.
const MinWebhookSecretBytes = 16

// checkSecretLength reports a secret readable now (a file or variable; Kubernetes Secrets are
// mounted at run time and checked then) that is too short to verify anything.
func (l *loader) checkSecretLength(d *doc, path string, r SecretRef, provider string) {
	if r.Name != "" {
		return
	}
	v, err := r.Read("")
	if err != nil {
		return // a secret not there yet is reported when a request needs it
	}
	n := len(v)
	if provider == "standardwebhooks" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(v), "whsec_"))
		if err != nil {
			l.errAt(d, path, "a Standard Webhooks secret is whsec_ followed by base64")
			return
		}
		n = len(key)
	}
	if n < MinWebhookSecretBytes {
		l.errAt(d, path, "the secret is %d bytes; at least %d are needed (a short secret can be guessed, and signatures made with it forged)", n, MinWebhookSecretBytes)
	}
}

func (l *loader) compileWebhooks(brokers map[router.BrokerRef]*brokerDoc, s *Settings) []*WebhookSource {
	var out []*WebhookSource
	seen := map[router.BrokerRef]*doc{}
	add := func(d *doc, w *WebhookSource) {
		key := router.BrokerRef{Namespace: w.Namespace, Name: w.Name}
		if prev, dup := seen[key]; dup {
			l.errAt(d, "metadata.name", "webhook source %s/%s is defined twice (first at %s:%d)", w.Namespace, w.Name, prev.file, prev.line(""))
			return
		}
		seen[key] = d
		out = append(out, w)
	}
	for i := range l.webhooks {
		wd := &l.webhooks[i]
		ref, ok := l.objectRef(wd.d, &wd.m.Metadata)
		if !ok {
			continue
		}
		spec := &wd.m.Spec
		w := &WebhookSource{Namespace: ref.Namespace, Name: ref.Name, Provider: spec.Provider, Source: spec.Source,
			DedupWindow: 10 * time.Minute, Tolerance: 5 * time.Minute, File: wd.d.file, Line: wd.d.line("")}
		if !webhookProviders[spec.Provider] {
			l.errAt(wd.d, "spec.provider", "%q is not a provider (github, gitlab, stripe, slack, standardwebhooks, generic)", spec.Provider)
		}
		for j := range spec.Secrets {
			path := fmt.Sprintf("spec.secrets[%d]", j)
			if r, ok := l.secretRef(wd.d, path, &spec.Secrets[j]); ok {
				w.Secrets = append(w.Secrets, r)
				l.checkSecretLength(wd.d, path, r, spec.Provider)
			}
		}
		needsSecret := spec.Provider != "generic" || (spec.Generic != nil && spec.Generic.Verification != "none")
		if needsSecret && len(spec.Secrets) == 0 {
			l.errAt(wd.d, "spec.secrets", "a %s webhook needs at least one secret to verify requests", spec.Provider)
		}
		l.durationField(wd.d, "spec.deduplicationWindow", spec.DeduplicationWindow, &w.DedupWindow, true)
		l.durationField(wd.d, "spec.timestampTolerance", spec.TimestampTolerance, &w.Tolerance, false)
		if spec.CEOverrides != nil {
			w.Extensions = l.extensions(wd.d, spec.CEOverrides.Extensions)
		}
		if spec.Provider == "generic" {
			w.Generic = l.compileGeneric(wd.d, spec.Generic)
		} else if spec.Generic != nil {
			l.errAt(wd.d, "spec.generic", "applies to the generic provider only")
		}
		w.Sink = l.sink(wd.d, spec.Sink, ref.Namespace, brokers, s)
		add(wd.d, w)
	}
	for i := range l.github {
		gd := &l.github[i]
		ref, ok := l.objectRef(gd.d, &gd.m.Metadata)
		if !ok {
			continue
		}
		spec := &gd.m.Spec
		w := &WebhookSource{Namespace: ref.Namespace, Name: ref.Name, Provider: "github", DedupWindow: 10 * time.Minute,
			Tolerance: 5 * time.Minute, GitHubEventTypes: spec.EventTypes, GitHubRepository: spec.OwnerAndRepository,
			File: gd.d.file, Line: gd.d.line("")}
		if spec.OwnerAndRepository == "" {
			l.errAt(gd.d, "spec.ownerAndRepository", "must be set (owner/repository, or an organization)")
		} else {
			w.Source = "https://github.com/" + spec.OwnerAndRepository
		}
		if len(spec.EventTypes) == 0 {
			l.errAt(gd.d, "spec.eventTypes", "must list at least one GitHub event type (e.g. push, pull_request)")
		}
		if spec.SecretToken.SecretKeyRef == nil {
			l.errAt(gd.d, "spec.secretToken.secretKeyRef", "must name the Secret key holding the webhook secret")
		} else if r, ok := l.secretRef(gd.d, "spec.secretToken", &secretRef{SecretKeyRef: spec.SecretToken.SecretKeyRef}); ok {
			w.Secrets = []SecretRef{r}
		}
		if spec.CEOverrides != nil {
			w.Extensions = l.extensions(gd.d, spec.CEOverrides.Extensions)
		}
		w.Sink = l.sink(gd.d, spec.Sink, ref.Namespace, brokers, s)
		add(gd.d, w)
	}
	return out
}

func (l *loader) secretRef(d *doc, path string, r *secretRef) (SecretRef, bool) {
	set := 0
	var out SecretRef
	if k := r.SecretKeyRef; k != nil {
		set++
		if k.Name == "" || k.Key == "" || strings.ContainsAny(k.Name+k.Key, "/\\") || k.Name == ".." || k.Key == ".." {
			l.errAt(d, path+".secretKeyRef", "needs a name and a key (no slashes)")
			return out, false
		}
		out.Name, out.Key = k.Name, k.Key
	}
	if r.File != "" {
		set++
		out.File = r.File
	}
	if r.Env != "" {
		set++
		out.Env = r.Env
	}
	if set != 1 {
		l.errAt(d, path, "set exactly one of secretKeyRef, file, env")
		return out, false
	}
	return out, true
}

func (l *loader) durationField(d *doc, path, v string, dst *time.Duration, zeroOK bool) {
	if v == "" {
		return
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 0 || (dur == 0 && !zeroOK) {
		l.errAt(d, path, "%q is not a valid duration such as 10m or 300s", v)
		return
	}
	*dst = dur
}

func (l *loader) extensions(d *doc, ext map[string]string) map[string]string {
	for k := range ext {
		if !attributeName.MatchString(k) {
			l.errAt(d, "spec.ceOverrides.extensions."+k, "extension names are lower-case letters and digits, starting with a letter")
		}
	}
	return ext
}

// sink resolves a source's sink: a ref to a Broker, Sequence or Parallel of this configuration, or
// a URL.
func (l *loader) sink(d *doc, dst *destination, namespace string, brokers map[router.BrokerRef]*brokerDoc, s *Settings) Sink {
	if dst == nil {
		l.errAt(d, "spec.sink", "must be set: a ref to a Broker, or a uri")
		return Sink{}
	}
	if r := dst.Ref; r != nil && r.Kind == "Broker" {
		if r.APIVersion != knativeEventingV1 {
			l.errAt(d, "spec.sink.ref.apiVersion", "a Broker ref needs apiVersion %s", knativeEventingV1)
			return Sink{}
		}
		ns := r.Namespace
		if ns == "" {
			ns = namespace
		}
		ref := router.BrokerRef{Namespace: ns, Name: r.Name}
		if _, ok := brokers[ref]; !ok {
			l.errAt(d, "spec.sink.ref", "broker %s is not defined in this configuration", ref)
			return Sink{}
		}
		if dst.URI != "" {
			l.errAt(d, "spec.sink.uri", "a uri beside a Broker ref is not supported")
		}
		return Sink{Broker: &ref}
	}
	if r := dst.Ref; r != nil && r.APIVersion == flowsV1 && dst.URI == "" {
		// A Sequence or Parallel of this configuration: into its first broker, in process.
		ns := r.Namespace
		if ns == "" {
			ns = namespace
		}
		if l.hasFlow(r.Kind, ns, r.Name) {
			return Sink{Broker: &router.BrokerRef{Namespace: ns, Name: flowEntry(r.Kind, r.Name)}}
		}
	}
	u := l.resolveDestination(d, "spec.sink", dst, namespace, s)
	if _, err := url.Parse(u); err != nil {
		return Sink{}
	}
	return Sink{URI: u}
}

func (l *loader) compileGeneric(d *doc, g *genericSpec) *GenericWebhook {
	if g == nil {
		l.errAt(d, "spec.generic", "the generic provider needs generic.verification (hmac, bearer, or none said explicitly)")
		return nil
	}
	out := &GenericWebhook{Verification: g.Verification}
	switch g.Verification {
	case "hmac":
		if g.HMAC == nil || g.HMAC.Header == "" {
			l.errAt(d, "spec.generic.hmac.header", "must name the header carrying the signature")
			break
		}
		out.HMACHeader, out.HMACAlgorithm, out.HMACEncoding, out.HMACPrefix = g.HMAC.Header, g.HMAC.Algorithm, g.HMAC.Encoding, g.HMAC.Prefix
		if out.HMACAlgorithm == "" {
			out.HMACAlgorithm = "sha256"
		}
		if out.HMACEncoding == "" {
			out.HMACEncoding = "hex"
		}
		if out.HMACAlgorithm != "sha1" && out.HMACAlgorithm != "sha256" && out.HMACAlgorithm != "sha512" {
			l.errAt(d, "spec.generic.hmac.algorithm", "%q is not sha1, sha256 or sha512", out.HMACAlgorithm)
		}
		if out.HMACEncoding != "hex" && out.HMACEncoding != "base64" {
			l.errAt(d, "spec.generic.hmac.encoding", "%q is not hex or base64", out.HMACEncoding)
		}
	case "bearer":
		out.BearerHeader = "Authorization"
		if g.Bearer != nil && g.Bearer.Header != "" {
			out.BearerHeader = g.Bearer.Header
		}
	case "none":
	default:
		l.errAt(d, "spec.generic.verification", "%q is not hmac, bearer or none", g.Verification)
	}
	rule := func(name string, r *fieldRule) FieldRule {
		if r == nil {
			return FieldRule{}
		}
		if r.Header == "" && r.JSON == "" && r.Value == "" {
			l.errAt(d, "spec.generic."+name, "set header, json or value")
		}
		return FieldRule(*r)
	}
	out.Type, out.Source, out.Subject, out.ID = rule("type", g.Type), rule("source", g.Source), rule("subject", g.Subject), rule("id", g.ID)
	return out
}

// compileKafkaSources validates KafkaSource documents.
func (l *loader) compileKafkaSources(brokers map[router.BrokerRef]*brokerDoc, s *Settings) []*KafkaSource {
	var out []*KafkaSource
	seen := map[router.BrokerRef]bool{}
	for i := range l.kafkaSrc {
		kd := &l.kafkaSrc[i]
		ref, ok := l.uniqueRef(kd.d, &kd.m.Metadata, "KafkaSource", seen)
		if !ok {
			continue
		}
		spec := &kd.m.Spec
		k := &KafkaSource{Namespace: ref.Namespace, Name: ref.Name, BootstrapServers: spec.BootstrapServers, Topics: spec.Topics, Group: spec.ConsumerGroup}
		if len(spec.BootstrapServers) == 0 {
			l.errAt(kd.d, "spec.bootstrapServers", "must name at least one Kafka broker (host:port)")
		}
		if len(spec.Topics) == 0 {
			l.errAt(kd.d, "spec.topics", "must name at least one topic")
		}
		if k.Group == "" {
			k.Group = "knative-kafka-source-" + ref.Namespace + "-" + ref.Name
		}
		switch spec.InitialOffset {
		case "earliest":
		case "", "latest": // Knative's default: a migrated source does not replay its whole topic
			k.FromLatest = true
		default:
			l.errAt(kd.d, "spec.initialOffset", "must be earliest or latest, got %q", spec.InitialOffset)
		}
		switch spec.Ordering {
		case "", "ordered", "unordered":
		default:
			l.errAt(kd.d, "spec.ordering", "must be ordered or unordered, got %q", spec.Ordering)
		}
		if spec.Net != nil {
			k.Security = l.compileKafkaNet(kd.d, spec.Net)
		}
		if spec.CEOverrides != nil {
			k.Extensions = l.extensions(kd.d, spec.CEOverrides.Extensions)
		}
		k.Sink = l.sink(kd.d, spec.Sink, ref.Namespace, brokers, s)
		if spec.Delivery != nil {
			p := resolvePolicy(l.parseDelivery(kd.d, "spec.delivery", spec.Delivery, ref.Namespace, s, true))
			k.Delivery = &p
		}
		out = append(out, k)
	}
	return out
}

// compileKafkaNet reads a KafkaSource's net block, Knative's shape: secretKeyRefs throughout.
func (l *loader) compileKafkaNet(d *doc, n *kafkaNet) KafkaSecurity {
	var out KafkaSecurity
	ref := func(path string, v secretValueK, required bool) (SecretRef, bool) {
		if v.SecretKeyRef == nil {
			if required {
				l.errAt(d, path+".secretKeyRef", "must name the Secret key")
			}
			return SecretRef{}, false
		}
		return l.secretRef(d, path, &secretRef{SecretKeyRef: v.SecretKeyRef})
	}
	if t := n.TLS; t != nil && t.Enable {
		out.TLS = &KafkaTLS{}
		out.TLS.CA, _ = ref("spec.net.tls.caCert", t.CACert, false)
		cert, hasCert := ref("spec.net.tls.cert", t.Cert, false)
		key, hasKey := ref("spec.net.tls.key", t.Key, false)
		if hasCert != hasKey {
			l.errAt(d, "spec.net.tls", "cert and key go together")
		}
		out.TLS.Cert, out.TLS.Key = cert, key
	}
	if a := n.SASL; a != nil && a.Enable {
		out.SASL = &KafkaSASL{Mechanism: "PLAIN"}
		out.SASL.User, _ = ref("spec.net.sasl.user", a.User, true)
		out.SASL.Password, _ = ref("spec.net.sasl.password", a.Pass, true)
		if mech, ok := ref("spec.net.sasl.type", a.Type, false); ok {
			out.SASL.Mechanism, out.SASL.MechanismRef = "", &mech
		}
	}
	return out
}
