package cehttp

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// WriteBinary sets the ce- headers and Content-Type of e on h (binary mode) and returns the body.
// Header values are percent-encoded as the HTTP binding requires.
func WriteBinary(h http.Header, e *event.Event) []byte {
	// One backing array for every header's value slice: a delivery sets eight or more headers, and
	// this runs for every delivery.
	exts := extensions(e)
	vals := make([]string, 0, 8+len(exts))
	set := func(name, value string) {
		vals = append(vals, encodeValue(value))
		h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set("Ce-Specversion", e.SpecVersion())
	set("Ce-Id", e.ID())
	set("Ce-Source", e.Source())
	set("Ce-Type", e.Type())
	if s := e.Subject(); s != "" {
		set("Ce-Subject", s)
	}
	if t := e.Time(); !t.IsZero() {
		set("Ce-Time", t.UTC().Format(time.RFC3339Nano))
	}
	if s := e.DataSchema(); s != "" {
		if e.SpecVersion() == event.CloudEventsVersionV03 {
			set("Ce-Schemaurl", s)
		} else {
			set("Ce-Dataschema", s)
		}
	}
	if ct := e.DataContentType(); ct != "" {
		h["Content-Type"] = []string{ct}
	}
	for name, v := range exts {
		s, err := types.Format(v)
		if err != nil {
			continue // sdk-go only stores values it can format
		}
		set(extensionHeader(name), s)
	}
	return e.Data()
}

// extensions returns e's extensions without the copy event.Event.Extensions makes of them for
// version 1.0 events; the map is only read.
func extensions(e *event.Event) map[string]any {
	if ec, ok := e.Context.(*event.EventContextV1); ok {
		return ec.Extensions
	}
	return e.Extensions()
}

// extensionHeaders caches the header name of each extension seen ("knativearrivaltime" ->
// "Ce-Knativearrivaltime"), up to maxExtensionHeaders names.
var (
	extensionHeaders  sync.Map
	extensionHeadersN atomic.Int32
)

const maxExtensionHeaders = 4096

func extensionHeader(name string) string {
	if h, ok := extensionHeaders.Load(name); ok {
		return h.(string)
	}
	h := http.CanonicalHeaderKey("ce-" + name)
	if extensionHeadersN.Load() < maxExtensionHeaders {
		if _, loaded := extensionHeaders.LoadOrStore(name, h); !loaded {
			extensionHeadersN.Add(1)
		}
	}
	return h
}

// EncodeStructured returns e as an application/cloudevents+json body.
func EncodeStructured(e *event.Event) ([]byte, error) { return e.MarshalJSON() }

// ContentTypeStructured is the Content-Type of a structured-mode body.
const ContentTypeStructured = MediaStructured + "; charset=utf-8"

// encodeValue percent-encodes what the HTTP binding says must be: space, double quote, percent, and
// every byte outside printable ASCII. Values needing nothing are returned as they are, unallocated.
func encodeValue(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if mustEscape(s[i]) {
			break
		}
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if mustEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func mustEscape(c byte) bool { return c <= ' ' || c >= 0x7f || c == '"' || c == '%' }
