package router

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// ErrInvalidEvent: the event breaks the CloudEvents spec (400). Errors wrapping it name the
// attribute at fault.
var ErrInvalidEvent = errors.New("invalid CloudEvent")

// ValidateEvent checks e against the CloudEvents spec: sdk-go's Validate, and on top of it the
// rules sdk-go leaves unchecked (see CheckEventStrings). The error names the attribute at fault.
func ValidateEvent(e *event.Event) error {
	// sdk-go words a missing attribute three different ways; say it one way, naming the attribute.
	for _, a := range [...]struct{ name, value string }{{"id", e.ID()}, {"type", e.Type()}} {
		if a.value == "" {
			return fmt.Errorf("%w: %s: REQUIRED but MISSING", ErrInvalidEvent, a.name)
		}
	}
	if e.Context != nil && e.Context.GetSource() == "" {
		return fmt.Errorf("%w: source: REQUIRED but MISSING", ErrInvalidEvent)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidEvent, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
	}
	return CheckEventStrings(e)
}

// CheckEventStrings checks what sdk-go's Validate does not: every extension name is non-empty
// and made of a-z and 0-9, and every String value (id, source, type, subject, datacontenttype,
// dataschema and string extensions) is valid UTF-8 without control characters (U+0000-001F,
// U+007F-009F) or noncharacters (CloudEvents 1.0.2, "Type System"). Such values reach HTTP headers
// and Prometheus labels further on, where they are refused or make libraries panic, so they are
// refused at the edge, where the producer can be told which attribute is wrong. It allocates
// nothing for a valid 1.0 event: every accepted event passes here.
func CheckEventStrings(e *event.Event) error {
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok {
		return checkStringsGeneric(e)
	}
	if err := checkString("id", ec.ID); err != nil {
		return err
	}
	if err := checkURL("source", &ec.Source.URL); err != nil {
		return err
	}
	if err := checkString("type", ec.Type); err != nil {
		return err
	}
	if ec.Subject != nil {
		if err := checkString("subject", *ec.Subject); err != nil {
			return err
		}
	}
	if ec.DataContentType != nil {
		if err := checkString("datacontenttype", *ec.DataContentType); err != nil {
			return err
		}
	}
	if ec.DataSchema != nil {
		if err := checkURL("dataschema", &ec.DataSchema.URL); err != nil {
			return err
		}
	}
	return checkExtensions(ec.Extensions)
}

// checkStringsGeneric is CheckEventStrings for other spec versions (0.3), through sdk-go's copies.
func checkStringsGeneric(e *event.Event) error {
	for _, a := range [...]struct{ name, value string }{
		{"id", e.ID()}, {"source", e.Source()}, {"type", e.Type()}, {"subject", e.Subject()},
		{"datacontenttype", e.DataContentType()}, {"dataschema", e.DataSchema()},
	} {
		if err := checkString(a.name, a.value); err != nil {
			return err
		}
	}
	return checkExtensions(e.Extensions())
}

func checkExtensions(ext map[string]any) error {
	for name, v := range ext {
		if err := CheckAttributeName(name); err != nil {
			return err
		}
		if s, ok := v.(string); ok {
			if err := checkString(name, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkURL checks a URI attribute's parts without formatting it back into one string.
func checkURL(name string, u *url.URL) error {
	for _, part := range [...]string{u.Scheme, u.Opaque, u.Host, u.Path, u.RawPath, u.RawQuery, u.Fragment} {
		if err := checkString(name, part); err != nil {
			return err
		}
	}
	if u.User != nil {
		return checkString(name, u.User.String())
	}
	return nil
}

// CheckAttributeName reports whether name is a valid CloudEvents attribute name: one or more of
// a-z and 0-9 (CloudEvents 1.0.2, "Attribute Naming Convention").
func CheckAttributeName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: an extension attribute has an empty name", ErrInvalidEvent)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("%w: extension attribute name %q: only a-z and 0-9 are allowed", ErrInvalidEvent, printable(name))
		}
	}
	return nil
}

// checkString applies the String type's rules to attribute name's value v.
func checkString(name, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f {
			return checkStringSlow(name, v)
		}
	}
	return nil // printable ASCII: the common case, decided without decoding runes
}

func checkStringSlow(name, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s: value is not valid UTF-8 (after percent-decoding): %q", ErrInvalidEvent, name, printable(v))
	}
	for _, r := range v {
		if badRune(r) {
			return fmt.Errorf("%w: %s: value contains %U, which a CloudEvents String must not contain: %q", ErrInvalidEvent, name, r, printable(v))
		}
	}
	return nil
}

// badRune reports the code points a CloudEvents String excludes: controls and noncharacters.
// (Unpaired surrogates cannot occur in valid UTF-8.)
func badRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r >= 0xfdd0 && r <= 0xfdef:
		return true
	case r&0xfffe == 0xfffe: // U+xFFFE and U+xFFFF on every plane
		return true
	}
	return false
}

// printable quotes at most 64 bytes of v for an error message.
func printable(v string) string {
	if len(v) > 64 {
		return v[:64] + "..."
	}
	return v
}

// envelopeOverhead approximates what an envelope costs beyond its strings and data: the event's
// structures, maps, the envelope itself and its place in queues.
const envelopeOverhead = 1024

// extensionOverhead is what one extension costs beyond its name's and value's bytes: its slot in
// the extension map, the boxed value, the allocations' rounding (measured: 60 bytes live for an
// empty extension with a short name, decoded from structured mode), and the header entry a
// binary-mode delivery builds for it while the attempt is in flight (about 100 more: an event of
// 200,000 empty extensions held 12 MB and each delivery of it 20 MB more).
const extensionOverhead = 160

// EnvelopeSize estimates the memory env holds: its data, every attribute's and extension's
// bytes and forwarded headers, plus fixed overheads, and what one delivery of it adds while its
// attempt is in flight (the URI attributes formatted into headers, a header entry per extension;
// other values are sent as they are held). It is what memory bounds count per event, so it must
// count every byte a producer chooses (a 3 MiB dataschema costs what 3 MiB of data does), must be
// cheap, and must not change while the event is held (it is computed once, at admission).
func EnvelopeSize(env *Envelope) int64 {
	n := int64(envelopeOverhead)
	e := env.Event
	n += int64(len(e.DataEncoded))
	if ec, ok := e.Context.(*event.EventContextV1); ok {
		n += int64(len(ec.ID)+len(ec.Type)) + 2*urlSize(&ec.Source.URL)
		if ec.Subject != nil {
			n += int64(len(*ec.Subject))
		}
		if ec.DataContentType != nil {
			n += int64(len(*ec.DataContentType))
		}
		if ec.DataSchema != nil {
			n += 2 * urlSize(&ec.DataSchema.URL)
		}
		n += extensionsSize(ec.Extensions)
	} else {
		n += int64(len(e.ID()) + len(e.Type()) + 2*len(e.Source()) + len(e.Subject()) + len(e.DataContentType()) + 2*len(e.DataSchema()))
		n += extensionsSize(e.Extensions())
	}
	for k, vs := range env.Headers {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// AttributesSize estimates what a data-less copy of an event holds (Outcome.Attributes): its
// attribute and extension bytes as EnvelopeSize counts them, and its context's structure instead
// of an envelope's overhead.
func AttributesSize(e *event.Event) int64 {
	const contextOverhead = 192
	return EnvelopeSize(&Envelope{Event: e}) - envelopeOverhead + contextOverhead
}

// urlSize is the bytes of a URI attribute's parts, each held as a string of its own.
func urlSize(u *url.URL) int64 {
	n := len(u.Scheme) + len(u.Opaque) + len(u.Host) + len(u.Path) + len(u.RawPath) + len(u.RawQuery) + len(u.Fragment) + len(u.RawFragment)
	if u.User != nil {
		n += len(u.User.Username())
		if p, ok := u.User.Password(); ok {
			n += len(p)
		}
	}
	return int64(n)
}

// extensionsSize is what ext holds: every name and value, and each one's overhead.
func extensionsSize(ext map[string]any) int64 {
	var n int64
	for k, v := range ext {
		n += int64(len(k)) + extensionOverhead
		switch v := v.(type) {
		case string:
			n += int64(len(v))
		case []byte:
			n += int64(len(v))
		case types.URI:
			n += urlSize(&v.URL)
		case types.URIRef:
			n += urlSize(&v.URL)
		}
	}
	return n
}

// Extension is e's extension name, read in place: Event.Extensions copies the whole map and
// GetExtension builds an error when it is absent, an allocation per call either way on paths that
// run for every event (filters, the TTL, trace context).
func Extension(e *event.Event, name string) (any, bool) {
	if ec, ok := e.Context.(*event.EventContextV1); ok {
		v, ok := ec.Extensions[name]
		return v, ok
	}
	v, err := e.Context.GetExtension(name)
	return v, err == nil
}
