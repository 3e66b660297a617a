package router

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func TestValidateEvent(t *testing.T) {
	base := func() *event.Event {
		e := event.New()
		e.SetID("1")
		e.SetSource("/s")
		e.SetType("com.example.order")
		return &e
	}
	cases := []struct {
		name   string
		mutate func(e *event.Event)
		want   string // "" when valid
	}{
		{name: "valid", mutate: func(*event.Event) {}},
		{name: "unicode allowed", mutate: func(e *event.Event) { e.SetSubject("bestellung/größe/注文") }},
		{name: "string extension valid", mutate: func(e *event.Event) { e.SetExtension("region", "eu-west") }},
		{name: "integer extension", mutate: func(e *event.Event) { e.SetExtension("count", 5) }},
		{name: "missing type", mutate: func(e *event.Event) { e.SetType("") }, want: "type: REQUIRED but MISSING"},
		{name: "invalid UTF-8 in type", mutate: func(e *event.Event) { e.SetType("com.example.order.\xff") }, want: "type: value is not valid UTF-8"},
		{name: "control character in source", mutate: func(e *event.Event) { e.SetSource("/s\x01") }, want: "source: "},
		{name: "newline in id", mutate: func(e *event.Event) { e.SetID("a\nb") }, want: "id: value contains U+000A"},
		{name: "C1 control in subject", mutate: func(e *event.Event) { e.SetSubject("x\u0090") }, want: "subject: value contains U+0090"},
		{name: "noncharacter in extension", mutate: func(e *event.Event) { e.SetExtension("region", "eu\uFDD0") }, want: "region: value contains U+FDD0"},
		{name: "plane noncharacter", mutate: func(e *event.Event) { e.SetExtension("region", "\U0001FFFE") }, want: "region: value contains U+1FFFE"},
		{name: "DEL", mutate: func(e *event.Event) { e.SetExtension("region", "a\x7f") }, want: "region: value contains U+007F"},
		{name: "invalid extension name", mutate: func(e *event.Event) { e.SetExtension("my_ext", "v") }, want: "my_ext"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := base()
			c.mutate(e)
			err := ValidateEvent(e)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid event refused: %v", err)
			case c.want == "":
			case err == nil:
				t.Fatalf("accepted; want an error containing %q", c.want)
			case !errors.Is(err, ErrInvalidEvent):
				t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
			case !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestCheckAttributeName(t *testing.T) {
	for name, ok := range map[string]bool{"a": true, "knativebrokerttl": true, "x9": true, "": false, "my_ext": false, "Upper": false, "a-b": false} {
		if err := CheckAttributeName(name); (err == nil) != ok {
			t.Errorf("CheckAttributeName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	for err, want := range map[error]int{
		nil: 202, ErrBrokerNotFound: 404, ErrInvalidEvent: 400, ErrTTLExpired: 400, ErrTooLarge: 413,
		ErrQueueFull: 429, ErrUnavailable: 503, errors.New("kafka: broken pipe"): 503,
	} {
		if got := HTTPStatus(err); got != want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", err, got, want)
		}
	}
}

// benchEvent is a typical event: every String attribute set, one extension.
func benchEvent() *event.Event {
	e := event.New()
	e.SetID("4f6e1b52-3d4a-4a8e-9c1e-2b1f1a0e9d11")
	e.SetSource("/apps/orders/eu-west-1")
	e.SetType("com.example.order.created")
	e.SetSubject("orders/12345")
	e.SetDataContentType("application/json")
	e.SetExtension("region", "eu-west-1")
	return &e
}

func BenchmarkValidateEvent(b *testing.B) {
	e := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateEvent(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckEventStrings(b *testing.B) {
	e := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckEventStrings(e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://fn.default.svc/path":          "http://fn.default.svc/path",
		"http://user:s3cret@fn.default.svc/p": "http://user:xxxxx@fn.default.svc/p",
		"https://ghp_token@host/":             "https://xxxxx@host/",
		"https://host/hook?token=s3cret&b=1":  "https://host/hook?token=xxxxx&b=xxxxx",
		"https://host/hook?flag":              "https://host/hook?flag",
		"https://u:p@host/?sig=abc":           "https://u:xxxxx@host/?sig=xxxxx",
		"not a url: %zz?x=1":                  "not a url: %zz?x=1",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRef(t *testing.T) {
	if ref, ok := ParseRef("shop/orders"); !ok || ref != (BrokerRef{Namespace: "shop", Name: "orders"}) {
		t.Errorf("shop/orders: %v %v", ref, ok)
	}
	for _, bad := range []string{"", "shop", "/orders", "shop/", "/"} {
		if _, ok := ParseRef(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
