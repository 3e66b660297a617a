package cehttp

import (
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// WriteBinary sets the ce- headers and Content-Type of e on h (binary mode) and returns the body.
// Header values are percent-encoded as the HTTP binding requires.
func WriteBinary(h http.Header, e *event.Event) []byte {
	// One backing array for every header's value slice: a delivery sets eight or more headers, and
	// this runs for every delivery.
	vals := make([]string, 0, 8+len(e.Extensions()))
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
	for name, v := range e.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			continue // sdk-go only stores values it can format
		}
		set(http.CanonicalHeaderKey("ce-"+name), s)
	}
	return e.Data()
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
