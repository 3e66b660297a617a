package cehttp

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestDecode(t *testing.T) {
	binary := func(extra ...string) http.Header {
		return header(append([]string{"Ce-Specversion", "1.0", "Ce-Id", "1", "Ce-Source", "/s", "Ce-Type", "t"}, extra...)...)
	}
	cases := []struct {
		name    string
		h       http.Header
		body    string
		n       int
		errText string
		check   func(t *testing.T, e *event.Event)
	}{
		{name: "binary", h: binary("Content-Type", "application/json"), body: `{"a":1}`, n: 1, check: func(t *testing.T, e *event.Event) {
			if e.DataContentType() != "application/json" || string(e.Data()) != `{"a":1}` {
				t.Errorf("data %q %q", e.DataContentType(), e.Data())
			}
		}},
		{name: "binary percent-decoded", h: binary("Ce-Subject", "a%20b%22c%25", "Ce-Myext", "%E2%82%AC"), n: 1, check: func(t *testing.T, e *event.Event) {
			if e.Subject() != `a b"c%` || e.Extensions()["myext"] != "€" {
				t.Errorf("subject %q myext %q", e.Subject(), e.Extensions()["myext"])
			}
		}},
		{name: "binary stray percent kept", h: binary("Ce-Subject", "100%"), n: 1, check: func(t *testing.T, e *event.Event) {
			if e.Subject() != "100%" {
				t.Errorf("subject %q", e.Subject())
			}
		}},
		{name: "binary 0.3", h: header("Ce-Specversion", "0.3", "Ce-Id", "1", "Ce-Source", "/s", "Ce-Type", "t"), n: 1},
		{name: "binary unknown version", h: header("Ce-Specversion", "1.1", "Ce-Id", "1", "Ce-Source", "/s", "Ce-Type", "t"), errText: `specversion: "1.1" is not a CloudEvents version`},
		{name: "binary missing id", h: header("Ce-Specversion", "1.0", "Ce-Source", "/s", "Ce-Type", "t"), errText: "id: REQUIRED but MISSING"},
		{name: "binary missing type", h: header("Ce-Specversion", "1.0", "Ce-Id", "1", "Ce-Source", "/s"), errText: "type: REQUIRED but MISSING"},
		{name: "structured", h: header("Content-Type", "application/cloudevents+json; charset=utf-8"), body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"aGk="}`, n: 1, check: func(t *testing.T, e *event.Event) {
			if string(e.Data()) != "hi" {
				t.Errorf("data %q", e.Data())
			}
		}},
		{name: "structured not JSON", h: header("Content-Type", "application/cloudevents+json"), body: `{`, errText: "not a JSON object"},
		{name: "structured missing specversion", h: header("Content-Type", "application/cloudevents+json"), body: `{"id":"1"}`, errText: "specversion: REQUIRED but MISSING"},
		// Integer extensions are whole numbers in 32 bits: sdk-go read 1e999999 as 0 and 1.5 as 1.
		{name: "structured integer extension", h: header("Content-Type", MediaStructured), body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"n":1.5},"n":1e5,"m":-7}`, n: 1, check: func(t *testing.T, e *event.Event) {
			if n, m := e.Extensions()["n"], e.Extensions()["m"]; n != int32(100000) || m != int32(-7) {
				t.Errorf("n %#v, m %#v", n, m)
			}
		}},
		{name: "structured huge exponent", h: header("Content-Type", MediaStructured), body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","n":1e999999}`, errText: "invalid CloudEvent: n: 1e999999 is not an Integer"},
		{name: "structured fraction", h: header("Content-Type", MediaStructured), body: `{"specversion":"1.0","id":"1","source":"/s","type":"t", "data" : 2.5, "n" : 1.5 }`, errText: "n: 1.5 is not an Integer"},
		{name: "structured escaped name", h: header("Content-Type", MediaStructured), body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","\u006e":0.5}`, errText: "n: 0.5 is not an Integer"},
		{name: "batch huge exponent", h: header("Content-Type", MediaBatch), body: `[{"specversion":"1.0","id":"1","source":"/s","type":"t","n":1},{"specversion":"1.0","id":"2","source":"/s","type":"t","n":-1e999999}]`, errText: "batch event 1: invalid CloudEvent: n: -1e999999 is not an Integer"},
		{name: "structured missing source", h: header("Content-Type", "application/cloudevents+json"), body: `{"specversion":"1.0","id":"1","type":"t"}`, errText: "source: REQUIRED but MISSING"},
		{name: "batch", h: header("Content-Type", "application/cloudevents-batch+json"), body: `[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"0.3","id":"2","source":"/s","type":"t"}]`, n: 2},
		{name: "batch empty", h: header("Content-Type", "application/cloudevents-batch+json"), body: `[]`, errText: "holds no events"},
		{name: "batch bad member", h: header("Content-Type", "application/cloudevents-batch+json"), body: `[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s"}]`, errText: "batch event 1: invalid CloudEvent: type: REQUIRED but MISSING"},
		{name: "plain json", h: header("Content-Type", "application/json"), body: `{}`, errText: "not a CloudEvent"},
		// Hostile input (issue #16): each of these used to panic or pass an attribute that later
		// panicked the metrics client or failed every delivery.
		{name: "empty extension name", h: func() http.Header { h := binary(); h["Ce-"] = []string{"x"}; return h }(), errText: `header "Ce-": invalid CloudEvent: an extension attribute has an empty name`},
		{name: "extension name with underscore", h: binary("Ce-My_ext", "x"), errText: `extension attribute name "my_ext"`},
		{name: "percent-encoded invalid UTF-8 type", h: binary("Ce-Type", "com.example.order.%FF"), errText: "invalid CloudEvent: type: value is not valid UTF-8"},
		{name: "raw invalid UTF-8 type", h: binary("Ce-Type", "com.example.order.\xff"), errText: "type: value is not valid UTF-8"},
		{name: "percent-encoded control in subject", h: binary("Ce-Subject", "a%0Ab"), errText: "subject: value contains U+000A"},
		{name: "structured invalid UTF-8 type", h: header("Content-Type", MediaStructured), body: "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\xff\"}", errText: "type: value is not valid UTF-8"},
		{name: "structured control in extension", h: header("Content-Type", MediaStructured), body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","region":"a\u0007"}`, errText: "region: value contains U+0007"},
		{name: "structured bad extension name", h: header("Content-Type", MediaStructured), body: `{"specversion":"1.0","id":"1","source":"/s","type":"t","my-ext":"a"}`, errText: "attribute names MUST consist of"},
		{name: "batch invalid UTF-8 type", h: header("Content-Type", MediaBatch), body: "[{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"},{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"/s\",\"type\":\"t\xff\"}]", errText: "batch event 1: invalid CloudEvent: type: value is not valid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs, err := Decode(c.h, []byte(c.body))
			if c.errText != "" {
				if err == nil || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("error %v, want one containing %q", err, c.errText)
				}
				return
			}
			if err != nil || len(evs) != c.n {
				t.Fatalf("got %d events, %v", len(evs), err)
			}
			if c.check != nil {
				c.check(t, evs[0])
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	e := event.New()
	e.SetID("id 1")
	e.SetSource("/s")
	e.SetType("t")
	e.SetSubject(`über "quoted" 100%`)
	e.SetExtension("count", 5)
	_ = e.SetData("text/plain", "body")
	h := http.Header{}
	body := WriteBinary(h, &e)
	if got := h.Get("Ce-Subject"); got != "%C3%BCber%20%22quoted%22%20100%25" {
		t.Errorf("encoded subject %q", got)
	}
	if h.Get("Ce-Id") != "id%201" || h.Get("Ce-Count") != "5" || h.Get("Content-Type") != "text/plain" {
		t.Errorf("headers %v", h)
	}
	back, err := Decode(h, body)
	if err != nil {
		t.Fatal(err)
	}
	if back[0].Subject() != e.Subject() || back[0].ID() != "id 1" || string(back[0].Data()) != "body" {
		t.Errorf("round trip changed the event: %v", back[0])
	}
	if got := encodeValue("plain-value"); got != "plain-value" {
		t.Errorf("encodeValue changed a plain value: %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("1.0", "application/json", "ext%20v", []byte(`{"a":1}`))
	f.Add("", "application/cloudevents+json", "", []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`))
	f.Add("", "application/cloudevents-batch+json", "", []byte(`[{"specversion":"1.0","id":"1","source":"/s","type":"t"}]`))
	f.Fuzz(func(t *testing.T, version, contentType, ext string, body []byte) {
		h := http.Header{}
		if version != "" {
			h.Set("Ce-Specversion", version)
			h.Set("Ce-Id", "1")
			h.Set("Ce-Source", "/s")
			h.Set("Ce-Type", "t")
			h.Set("Ce-Myext", ext)
		}
		h.Set("Content-Type", contentType)
		evs, err := Decode(h, body)
		if err != nil {
			return
		}
		for _, e := range evs {
			if e.Validate() != nil {
				t.Fatalf("Decode returned an invalid event: %v", e)
			}
		}
	})
}

// BenchmarkDecodeBinary is the ingress decode of a 1 KiB binary-mode event.
func BenchmarkDecodeBinary(b *testing.B) {
	body := []byte(`{"payload":"` + strings.Repeat("x", 1000) + `"}`)
	base := header("Ce-Specversion", "1.0", "Ce-Id", "abc-123", "Ce-Source", "/bench", "Ce-Type", "com.example.bench", "Content-Type", "application/json", "Ce-Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h := make(http.Header, len(base))
		for k, v := range base {
			h[k] = v
		}
		if _, err := Decode(h, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStructured is the ingress decode of a 1 KiB structured-mode event.
func BenchmarkDecodeStructured(b *testing.B) {
	body := []byte(`{"specversion":"1.0","id":"abc-123","source":"/bench","type":"com.example.bench","datacontenttype":"application/json","data":{"payload":"` + strings.Repeat("x", 1000) + `"}}`)
	h := header("Content-Type", "application/cloudevents+json")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(h, body); err != nil {
			b.Fatal(err)
		}
	}
}
