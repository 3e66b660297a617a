package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/switchyard-events/switchyard/router/config"
)

// request is a webhook request as the providers see it.
type request struct {
	h       http.Header
	body    []byte
	now     time.Time
	secrets [][]byte
	src     *config.WebhookSource
}

// result is what a provider made of a request: an event to route, or an answer to give at once
// (a rejection, a handshake, an ignored event kind).
type result struct {
	event      *event.Event
	deliveryID string // "" when the provider gives none: not deduplicated
	// bodyKey, when set, deduplicates on the signed body as well: for providers whose signature
	// covers the body only, a captured delivery replays under a new delivery id (and an unsigned
	// event-type header), and only its body gives it away.
	bodyKey string

	status      int    // the immediate answer when event is nil
	reason      string // metric label of a rejection
	message     string
	contentType string
}

func reject(status int, reason, format string, args ...any) result {
	return result{status: status, reason: reason, message: fmt.Sprintf(format, args...)}
}

func answer(status int, contentType, body string) result {
	return result{status: status, message: body, contentType: contentType}
}

// provider verifies a request and maps it to a CloudEvent.
type provider func(r *request) result

var providers = map[string]provider{
	"github":           gitHub,
	"gitlab":           gitLab,
	"stripe":           stripe,
	"slack":            slack,
	"standardwebhooks": standardWebhooks,
	"generic":          generic,
}

func macOf(newHash func() hash.Hash, key []byte, parts ...[]byte) []byte {
	m := hmac.New(newHash, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// anySecret reports whether sig equals the MAC of parts under any secret.
func anySecret(r *request, newHash func() hash.Hash, sig []byte, parts ...[]byte) bool {
	for _, s := range r.secrets {
		if hmac.Equal(sig, macOf(newHash, s, parts...)) {
			return true
		}
	}
	return false
}

// tokenMatches compares a shared token with every secret in constant time (all of them, so the
// time taken says nothing about which one matched).
func (r *request) tokenMatches(token string) bool {
	ok := false
	for _, s := range r.secrets {
		if subtle.ConstantTimeCompare(s, []byte(token)) == 1 {
			ok = true
		}
	}
	return ok
}

// jsonObject parses a body that must be a JSON object.
func jsonObject(body []byte) (map[string]any, bool) {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// field reads a dotted path (a.b.c) from a JSON object as a string; numbers print plainly.
func field(m map[string]any, path string) string {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = obj[p]
	}
	switch v := cur.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

func newEvent(id, typ, source, subject string, data []byte, contentType string) *event.Event {
	e := event.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(source)
	if subject != "" {
		e.SetSubject(subject)
	}
	e.SetDataContentType(contentType)
	e.DataEncoded = data
	return &e
}

func sourceOr(r *request, fallback string) string {
	if r.src.Source != "" {
		return r.src.Source
	}
	return fallback
}

// checkTimestamp rejects a signed timestamp (Unix seconds) outside the tolerance, either way.
func checkTimestamp(r *request, header, ts string) *result {
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		res := reject(http.StatusUnauthorized, "bad_timestamp", "%s is not a Unix timestamp", header)
		return &res
	}
	age := r.now.Sub(time.Unix(secs, 0))
	if age > r.src.Tolerance || age < -r.src.Tolerance {
		res := reject(http.StatusUnauthorized, "stale_timestamp", "%s is %s away from now, outside the %s tolerance (replayed or clock skew)", header, age.Round(time.Second), r.src.Tolerance)
		return &res
	}
	return nil
}

// gitHub verifies X-Hub-Signature-256 and maps like Knative's GitHubSource.
func gitHub(r *request) result {
	sig := r.h.Get("X-Hub-Signature-256")
	if sig == "" {
		return reject(http.StatusUnauthorized, "missing_signature", "missing X-Hub-Signature-256 header")
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
	if err != nil || !strings.HasPrefix(sig, "sha256=") {
		return reject(http.StatusUnauthorized, "bad_signature", "X-Hub-Signature-256 is not sha256=<hex>")
	}
	if !anySecret(r, sha256.New, raw, r.body) {
		return reject(http.StatusUnauthorized, "bad_signature", "X-Hub-Signature-256 does not match the body signed with any configured secret")
	}
	kind, delivery := r.h.Get("X-GitHub-Event"), r.h.Get("X-GitHub-Delivery")
	if kind == "" || delivery == "" {
		return reject(http.StatusBadRequest, "missing_header", "missing X-GitHub-Event or X-GitHub-Delivery header")
	}
	body := r.body
	if strings.HasPrefix(r.h.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(r.body))
		if err != nil || form.Get("payload") == "" {
			return reject(http.StatusBadRequest, "bad_body", "a form-encoded GitHub webhook needs a payload field")
		}
		body = []byte(form.Get("payload"))
	}
	payload, ok := jsonObject(body)
	if !ok {
		return reject(http.StatusBadRequest, "bad_body", "body is not a JSON object")
	}
	if kind == "ping" {
		return answer(http.StatusOK, "application/json", `{"msg":"pong"}`)
	}
	if types := r.src.GitHubEventTypes; len(types) > 0 && !contains(types, kind) {
		return answer(http.StatusOK, "text/plain", fmt.Sprintf("event %s is not among this source's eventTypes: ignored", kind))
	}
	source := r.src.Source
	if source == "" {
		switch {
		case field(payload, "repository.full_name") != "":
			source = "https://github.com/" + field(payload, "repository.full_name")
		case field(payload, "organization.login") != "":
			source = "https://github.com/" + field(payload, "organization.login")
		default:
			source = "https://github.com"
		}
	}
	e := newEvent(delivery, "dev.knative.source.github."+kind, source, gitHubSubject(kind, payload), body, "application/json")
	sum := sha256.Sum256(r.body)
	return result{event: e, deliveryID: delivery, bodyKey: "sha256:" + hex.EncodeToString(sum[:])}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// gitHubSubjects is Knative's GitHubSource choice of subject per event kind: a JSON path, and
// whether only the last path segment of its (URL) value is kept.
var gitHubSubjects = map[string]struct {
	path string
	last bool
}{
	"check_suite": {"check_suite.id", false}, "check_run": {"check_run.id", false},
	"commit_comment": {"comment.html_url", true}, "create": {"ref_type", false}, "delete": {"ref_type", false},
	"deployment": {"deployment.id", false}, "deployment_status": {"deployment.id", false},
	"fork": {"forkee.id", false}, "installation": {"installation.id", false},
	"issue_comment": {"comment.html_url", true}, "issues": {"issue.number", false}, "label": {"label.name", false},
	"member": {"member.id", false}, "membership": {"member.id", false}, "milestone": {"milestone.number", false},
	"organization": {"action", false}, "org_block": {"action", false}, "page_build": {"id", false},
	"project_card": {"action", false}, "project_column": {"action", false}, "project": {"action", false},
	"public": {"repository.id", false}, "pull_request": {"pull_request.number", false},
	"pull_request_review": {"review.id", false}, "pull_request_review_comment": {"comment.id", false},
	"push": {"compare", true}, "release": {"release.tag_name", false}, "repository": {"repository.id", false},
	"status": {"sha", false}, "team": {"team.id", false}, "team_add": {"repository.id", false}, "watch": {"repository.id", false},
}

func gitHubSubject(kind string, payload map[string]any) string {
	rule, ok := gitHubSubjects[kind]
	if !ok {
		return ""
	}
	v := field(payload, rule.path)
	if rule.last {
		if i := strings.LastIndexByte(v, '/'); i >= 0 {
			v = v[i+1:]
		}
	}
	return v
}

// gitLab checks X-Gitlab-Token (a shared token, not a signature: GitLab signs nothing).
func gitLab(r *request) result {
	token := r.h.Get("X-Gitlab-Token")
	if token == "" {
		return reject(http.StatusUnauthorized, "missing_signature", "missing X-Gitlab-Token header")
	}
	if !r.tokenMatches(token) {
		return reject(http.StatusUnauthorized, "bad_signature", "X-Gitlab-Token matches no configured secret")
	}
	hook := r.h.Get("X-Gitlab-Event")
	if hook == "" {
		return reject(http.StatusBadRequest, "missing_header", "missing X-Gitlab-Event header")
	}
	payload, isJSON := jsonObject(r.body)
	if !isJSON {
		return reject(http.StatusBadRequest, "bad_body", "body is not a JSON object")
	}
	kind := field(payload, "object_kind")
	if kind == "" { // "Merge Request Hook" -> merge_request
		kind = strings.ReplaceAll(strings.ToLower(strings.TrimSuffix(hook, " Hook")), " ", "_")
	}
	id := r.h.Get("X-Gitlab-Event-UUID")
	if id == "" {
		id = r.h.Get("Idempotency-Key")
	}
	deliveryID := id
	if id == "" {
		id = uuid.NewString()
	}
	source := sourceOr(r, field(payload, "project.web_url"))
	if source == "" {
		source = "https://gitlab.com"
	}
	subject := field(payload, "object_attributes.iid")
	if subject == "" {
		subject = field(payload, "object_attributes.id")
	}
	if subject == "" {
		subject = field(payload, "checkout_sha")
	}
	return result{event: newEvent(id, "dev.knative.sources.gitlab."+kind, source, subject, r.body, "application/json"), deliveryID: deliveryID}
}

// stripe verifies Stripe-Signature: t=<unix>,v1=<hex>[,v1=...] over "{t}.{body}".
func stripe(r *request) result {
	header := r.h.Get("Stripe-Signature")
	if header == "" {
		return reject(http.StatusUnauthorized, "missing_signature", "missing Stripe-Signature header")
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	if ts == "" || len(sigs) == 0 {
		return reject(http.StatusUnauthorized, "bad_signature", "Stripe-Signature needs t= and at least one v1=")
	}
	if res := checkTimestamp(r, "Stripe-Signature t", ts); res != nil {
		return *res
	}
	ok := false
	for _, sig := range sigs {
		if anySecret(r, sha256.New, sig, []byte(ts), []byte("."), r.body) {
			ok = true
		}
	}
	if !ok {
		return reject(http.StatusUnauthorized, "bad_signature", "no v1 signature of Stripe-Signature matches the body signed with any configured secret")
	}
	payload, isJSON := jsonObject(r.body)
	if !isJSON || field(payload, "id") == "" || field(payload, "type") == "" {
		return reject(http.StatusBadRequest, "bad_body", "body is not a Stripe event (a JSON object with id and type)")
	}
	e := newEvent(field(payload, "id"), "com.stripe."+field(payload, "type"), sourceOr(r, "https://api.stripe.com"), field(payload, "data.object.id"), r.body, "application/json")
	if created, err := strconv.ParseInt(field(payload, "created"), 10, 64); err == nil {
		e.SetTime(time.Unix(created, 0))
	}
	return result{event: e, deliveryID: field(payload, "id")}
}

// slack verifies X-Slack-Signature v0=<hex> over "v0:{timestamp}:{body}" and answers the
// url_verification challenge.
func slack(r *request) result {
	ts, sig := r.h.Get("X-Slack-Request-Timestamp"), r.h.Get("X-Slack-Signature")
	if ts == "" || sig == "" {
		return reject(http.StatusUnauthorized, "missing_signature", "missing X-Slack-Signature or X-Slack-Request-Timestamp header")
	}
	if res := checkTimestamp(r, "X-Slack-Request-Timestamp", ts); res != nil {
		return *res
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(sig, "v0="))
	if err != nil || !strings.HasPrefix(sig, "v0=") {
		return reject(http.StatusUnauthorized, "bad_signature", "X-Slack-Signature is not v0=<hex>")
	}
	if !anySecret(r, sha256.New, raw, []byte("v0:"+ts+":"), r.body) {
		return reject(http.StatusUnauthorized, "bad_signature", "X-Slack-Signature does not match the request signed with any configured secret")
	}
	if strings.HasPrefix(r.h.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return slackForm(r)
	}
	payload, ok := jsonObject(r.body)
	if !ok {
		return reject(http.StatusBadRequest, "bad_body", "body is not a JSON object")
	}
	switch field(payload, "type") {
	case "url_verification":
		return answer(http.StatusOK, "text/plain", field(payload, "challenge"))
	case "event_callback":
		id := field(payload, "event_id")
		if id == "" {
			return reject(http.StatusBadRequest, "bad_body", "event_callback without event_id")
		}
		subject := field(payload, "event.channel")
		e := newEvent(id, "com.slack.events."+field(payload, "event.type"), sourceOr(r, "https://slack.com/"+field(payload, "team_id")), subject, r.body, "application/json")
		if t, err := strconv.ParseInt(field(payload, "event_time"), 10, 64); err == nil {
			e.SetTime(time.Unix(t, 0))
		}
		return result{event: e, deliveryID: id}
	default:
		typ := field(payload, "type")
		if typ == "" {
			return reject(http.StatusBadRequest, "bad_body", "a Slack payload needs a type")
		}
		return result{event: newEvent(uuid.NewString(), "com.slack."+typ, sourceOr(r, "https://slack.com/"+field(payload, "team_id")), "", r.body, "application/json")}
	}
}

// slackForm maps slash commands (command=...) and interactivity (payload=<json>).
func slackForm(r *request) result {
	form, err := url.ParseQuery(string(r.body))
	if err != nil {
		return reject(http.StatusBadRequest, "bad_body", "body is not form-encoded")
	}
	if p := form.Get("payload"); p != "" {
		payload, ok := jsonObject([]byte(p))
		if !ok {
			return reject(http.StatusBadRequest, "bad_body", "the payload field is not a JSON object")
		}
		return result{event: newEvent(uuid.NewString(), "com.slack.interaction."+field(payload, "type"),
			sourceOr(r, "https://slack.com/"+field(payload, "team.id")), field(payload, "channel.id"), []byte(p), "application/json")}
	}
	if form.Get("command") == "" {
		return reject(http.StatusBadRequest, "bad_body", "a form-encoded Slack request needs command or payload")
	}
	flat := map[string]string{}
	for k := range form {
		flat[k] = form.Get(k)
	}
	data, _ := json.Marshal(flat)
	id := form.Get("trigger_id")
	if id == "" {
		id = uuid.NewString()
	}
	return result{event: newEvent(id, "com.slack.command", sourceOr(r, "https://slack.com/"+form.Get("team_id")), form.Get("channel_id"), data, "application/json")}
}

// standardWebhooks verifies webhook-signature: space-separated "v1,<base64>" over
// "{webhook-id}.{webhook-timestamp}.{body}", with a whsec_<base64> secret.
func standardWebhooks(r *request) result {
	id, ts, header := r.h.Get("webhook-id"), r.h.Get("webhook-timestamp"), r.h.Get("webhook-signature")
	if id == "" || ts == "" || header == "" {
		return reject(http.StatusUnauthorized, "missing_signature", "missing webhook-id, webhook-timestamp or webhook-signature header")
	}
	if res := checkTimestamp(r, "webhook-timestamp", ts); res != nil {
		return *res
	}
	ok := false
	for _, s := range r.secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(s), "whsec_"))
		if err != nil || len(key) < config.MinWebhookSecretBytes {
			continue // an empty or short key would let anyone sign
		}
		want := macOf(sha256.New, key, []byte(id+"."+ts+"."), r.body)
		for _, sig := range strings.Fields(header) {
			version, b64, _ := strings.Cut(sig, ",")
			raw, err := base64.StdEncoding.DecodeString(b64)
			if version == "v1" && err == nil && hmac.Equal(raw, want) {
				ok = true
			}
		}
	}
	if !ok {
		return reject(http.StatusUnauthorized, "bad_signature", "no v1 signature of webhook-signature matches the request signed with any configured secret")
	}
	ct := "application/json"
	typ, subject := "dev.switchyard.webhook", ""
	payload, isJSON := jsonObject(r.body)
	if isJSON {
		if t := field(payload, "type"); t != "" {
			typ = t
		}
	} else {
		ct = r.h.Get("Content-Type")
	}
	e := newEvent(id, typ, sourceOr(r, "/webhooks/"+r.src.Namespace+"/"+r.src.Name), subject, r.body, ct)
	if isJSON {
		if t, err := time.Parse(time.RFC3339, field(payload, "timestamp")); err == nil {
			e.SetTime(t)
		}
	}
	return result{event: e, deliveryID: id}
}

// generic verifies an HMAC header or a bearer token (or nothing, when configured so) and maps
// attributes by the configured rules.
func generic(r *request) result {
	g := r.src.Generic
	switch g.Verification {
	case "hmac":
		sig := r.h.Get(g.HMACHeader)
		if sig == "" {
			return reject(http.StatusUnauthorized, "missing_signature", "missing %s header", g.HMACHeader)
		}
		if g.HMACPrefix != "" && !strings.HasPrefix(sig, g.HMACPrefix) {
			return reject(http.StatusUnauthorized, "bad_signature", "%s does not start with %q", g.HMACHeader, g.HMACPrefix)
		}
		sig = strings.TrimPrefix(sig, g.HMACPrefix)
		var raw []byte
		var err error
		if g.HMACEncoding == "base64" {
			raw, err = base64.StdEncoding.DecodeString(sig)
		} else {
			raw, err = hex.DecodeString(sig)
		}
		if err != nil {
			return reject(http.StatusUnauthorized, "bad_signature", "%s is not %s", g.HMACHeader, g.HMACEncoding)
		}
		newHash := sha256.New
		switch g.HMACAlgorithm {
		case "sha1":
			newHash = sha1.New
		case "sha512":
			newHash = sha512.New
		}
		if !anySecret(r, newHash, raw, r.body) {
			return reject(http.StatusUnauthorized, "bad_signature", "%s does not match the body signed with any configured secret", g.HMACHeader)
		}
	case "bearer":
		token := r.h.Get(g.BearerHeader)
		if strings.EqualFold(g.BearerHeader, "Authorization") {
			scheme, rest, _ := strings.Cut(token, " ")
			if !strings.EqualFold(scheme, "bearer") {
				token = ""
			} else {
				token = rest
			}
		}
		if token == "" {
			return reject(http.StatusUnauthorized, "missing_signature", "missing bearer token in %s", g.BearerHeader)
		}
		if !r.tokenMatches(token) {
			return reject(http.StatusUnauthorized, "bad_signature", "the token matches no configured secret")
		}
	}
	payload, isJSON := jsonObject(r.body)
	ct := "application/json"
	if !isJSON {
		ct = r.h.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
	}
	pick := func(rule config.FieldRule, def string) string {
		if rule.Header != "" {
			if v := r.h.Get(rule.Header); v != "" {
				return v
			}
		}
		if rule.JSON != "" && isJSON {
			if v := field(payload, rule.JSON); v != "" {
				return v
			}
		}
		if rule.Value != "" {
			return rule.Value
		}
		return def
	}
	deliveryID := pick(g.ID, r.h.Get("Idempotency-Key"))
	id := deliveryID
	if id == "" {
		id = uuid.NewString()
	}
	typ := pick(g.Type, "dev.switchyard.webhook")
	source := pick(g.Source, sourceOr(r, "/webhooks/"+r.src.Namespace+"/"+r.src.Name))
	return result{event: newEvent(id, typ, source, pick(g.Subject, ""), r.body, ct), deliveryID: deliveryID}
}
