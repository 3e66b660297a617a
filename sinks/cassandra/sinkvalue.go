package cassandra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"
)

// A CassandraSink column's value comes from a path over the event: an attribute (id, source,
// type, subject, time, specversion, datacontenttype, dataschema), an extension by name, data (the
// whole payload), data.a.b.0 (a field of JSON data; numbers index arrays) or event (the event in
// the CloudEvents JSON format). valueAt reads it; toCQL converts it to the column's type.

// errMissing: the path names nothing in this event.
var errMissing = errors.New("no such value in the event")

// attributes are the paths that are CloudEvents attributes rather than extensions.
var attributes = map[string]bool{"id": true, "source": true, "type": true, "subject": true, "time": true,
	"specversion": true, "datacontenttype": true, "dataschema": true}

// checkPath reports what is wrong with a column's path, or "".
func checkPath(p string) string {
	switch head, rest, _ := strings.Cut(p, "."); {
	case p == "":
		return "is empty: name an attribute, an extension, data, data.FIELD or event"
	case head == "data" && rest != "":
		for _, seg := range strings.Split(rest, ".") {
			if seg == "" {
				return fmt.Sprintf("%q has an empty segment", p)
			}
		}
		return ""
	case rest != "":
		return fmt.Sprintf("%q: only data has fields (data.FIELD)", p)
	case head == "data" || head == "event" || attributes[head]:
		return ""
	default:
		for _, r := range head {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
				return fmt.Sprintf("%q is neither an attribute nor an extension name (lower-case letters and digits)", p)
			}
		}
		return ""
	}
}

// valueAt reads path from e: a string, time.Time, []byte (data), or what JSON decodes to (with
// json.Number for numbers). It returns errMissing when the event has nothing there.
func valueAt(e *event.Event, path string) (any, error) {
	head, rest, _ := strings.Cut(path, ".")
	switch {
	case head == "event":
		b, err := json.Marshal(e)
		return string(b), err
	case head == "data" && rest == "":
		if len(e.Data()) == 0 {
			return nil, errMissing
		}
		return e.Data(), nil
	case head == "data":
		var v any
		dec := json.NewDecoder(bytes.NewReader(e.Data()))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("data is not JSON (%v), so %s has no value", err, path)
		}
		for _, seg := range strings.Split(rest, ".") {
			switch c := v.(type) {
			case map[string]any:
				var ok bool
				if v, ok = c[seg]; !ok {
					return nil, errMissing
				}
			case []any:
				i, err := strconv.Atoi(seg)
				if err != nil || i < 0 || i >= len(c) {
					return nil, errMissing
				}
				v = c[i]
			default:
				return nil, errMissing
			}
		}
		if v == nil {
			return nil, errMissing // JSON null: no value
		}
		return v, nil
	case head == "time":
		if e.Time().IsZero() {
			return nil, errMissing
		}
		return e.Time(), nil
	case attributes[head]:
		v := map[string]string{"id": e.ID(), "source": e.Source(), "type": e.Type(), "subject": e.Subject(), "specversion": e.SpecVersion(),
			"datacontenttype": e.DataContentType(), "dataschema": e.DataSchema()}[head]
		if v == "" {
			return nil, errMissing
		}
		return v, nil
	default:
		v, ok := e.Extensions()[head]
		if !ok {
			return nil, errMissing
		}
		if t, ok := v.(time.Time); ok {
			return t, nil
		}
		return fmt.Sprint(v), nil
	}
}

// cqlType is a column's type as system_schema.columns writes it: a name, and the element types
// of a collection (frozen<> taken off).
type cqlType struct {
	name  string
	elems []cqlType
}

func (t cqlType) String() string {
	if len(t.elems) == 0 {
		return t.name
	}
	parts := make([]string, len(t.elems))
	for i, e := range t.elems {
		parts[i] = e.String()
	}
	return t.name + "<" + strings.Join(parts, ", ") + ">"
}

// scalarTypes are the CQL types toCQL converts to.
var scalarTypes = map[string]bool{"text": true, "varchar": true, "ascii": true, "int": true, "bigint": true, "smallint": true,
	"tinyint": true, "varint": true, "counter": false, "double": true, "float": true, "decimal": true, "boolean": true,
	"timestamp": true, "uuid": true, "timeuuid": true, "blob": true}

// parseCQLType reads a type such as "map<text, frozen<list<int>>>".
func parseCQLType(s string) (cqlType, error) {
	s = strings.TrimSpace(s)
	open := strings.IndexByte(s, '<')
	if open < 0 {
		if s == "varchar" {
			s = "text" // one type, two names: system_schema says text
		}
		if !scalarTypes[s] {
			return cqlType{}, fmt.Errorf("CQL type %s is not one a CassandraSink writes", s)
		}
		return cqlType{name: s}, nil
	}
	if !strings.HasSuffix(s, ">") {
		return cqlType{}, fmt.Errorf("cannot read CQL type %q", s)
	}
	name, inner := s[:open], s[open+1:len(s)-1]
	if name == "frozen" {
		return parseCQLType(inner)
	}
	var parts []string
	depth, start := 0, 0
	for i, r := range inner {
		switch r {
		case '<':
			depth++
		case '>':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, inner[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, inner[start:])
	want := map[string]int{"list": 1, "set": 1, "map": 2}[name]
	if want == 0 || len(parts) != want {
		return cqlType{}, fmt.Errorf("CQL type %s is not one a CassandraSink writes", s)
	}
	t := cqlType{name: name}
	for _, p := range parts {
		e, err := parseCQLType(p)
		if err != nil {
			return cqlType{}, err
		}
		t.elems = append(t.elems, e)
	}
	return t, nil
}

// toCQL converts v (from valueAt) to the Go value gocql writes as t.
func toCQL(v any, t cqlType) (any, error) {
	switch t.name {
	case "text", "varchar", "ascii":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case json.Number:
			return x.String(), nil
		case bool:
			return strconv.FormatBool(x), nil
		case time.Time:
			return x.UTC().Format(time.RFC3339Nano), nil
		default:
			b, err := json.Marshal(x) // an object or array, as JSON text
			return string(b), err
		}
	case "int", "bigint", "smallint", "tinyint", "counter":
		n, err := toInt(v)
		if err != nil {
			return nil, err
		}
		bits := map[string]int{"int": 32, "smallint": 16, "tinyint": 8}[t.name]
		if bits > 0 && (n < -(1<<(bits-1)) || n >= 1<<(bits-1)) {
			return nil, fmt.Errorf("%d is out of range for %s", n, t.name)
		}
		return n, nil
	case "varint":
		s, err := numberText(v)
		if err != nil {
			return nil, err
		}
		n, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case "double", "float":
		s, err := numberText(v)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		if t.name == "float" {
			return float32(f), nil
		}
		return f, nil
	case "decimal":
		s, err := numberText(v)
		if err != nil {
			return nil, err
		}
		d, ok := new(inf.Dec).SetString(s)
		if !ok {
			return nil, fmt.Errorf("%q is not a decimal number", s)
		}
		return d, nil
	case "boolean":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				return nil, fmt.Errorf("%q is not true or false", x)
			}
			return b, nil
		}
		return nil, fmt.Errorf("%s is not true or false", describe(v))
	case "timestamp":
		switch x := v.(type) {
		case time.Time:
			return x, nil
		case string:
			ts, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, fmt.Errorf("%q is not an RFC 3339 time", x)
			}
			return ts, nil
		case json.Number:
			ms, err := x.Int64()
			if err != nil {
				return nil, fmt.Errorf("%s is not whole milliseconds since the epoch", x)
			}
			return time.UnixMilli(ms), nil
		}
		return nil, fmt.Errorf("%s is not a time", describe(v))
	case "uuid", "timeuuid":
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a UUID", describe(v))
		}
		u, err := gocql.ParseUUID(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a UUID", s)
		}
		if t.name == "timeuuid" && u.Version() != 1 {
			return nil, fmt.Errorf("%q is not a time-based (version 1) UUID", s)
		}
		return u, nil
	case "blob":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil // the text's UTF-8 bytes
		default:
			return json.Marshal(x)
		}
	case "list", "set":
		arr, err := asArray(v)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(arr))
		for i, e := range arr {
			if out[i], err = toCQL(e, t.elems[0]); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return out, nil
	case "map":
		obj, err := asObject(v)
		if err != nil {
			return nil, err
		}
		out := make(map[any]any, len(obj))
		for k, e := range obj {
			key, err := toCQL(k, t.elems[0])
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			if out[key], err = toCQL(e, t.elems[1]); err != nil {
				return nil, fmt.Errorf("value of %q: %w", k, err)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("CQL type %s is not one a CassandraSink writes", t)
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 64 {
		b = append(b[:61], "..."...)
	}
	return string(b)
}

func numberText(v any) (string, error) {
	switch x := v.(type) {
	case json.Number:
		return x.String(), nil
	case string:
		return strings.TrimSpace(x), nil
	}
	return "", fmt.Errorf("%s is not a number", describe(v))
}

func toInt(v any) (int64, error) {
	s, err := numberText(v)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number that fits 64 bits", s)
	}
	return n, nil
}

// asArray takes a JSON array, or JSON text of one (data as a whole, a string field).
func asArray(v any) ([]any, error) {
	switch x := v.(type) {
	case []any:
		return x, nil
	case []byte, string:
		var arr []any
		if err := decodeJSON(x, &arr); err != nil {
			return nil, fmt.Errorf("not a JSON array: %v", err)
		}
		return arr, nil
	}
	return nil, fmt.Errorf("%s is not an array", describe(v))
}

func asObject(v any) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case []byte, string:
		var obj map[string]any
		if err := decodeJSON(x, &obj); err != nil {
			return nil, fmt.Errorf("not a JSON object: %v", err)
		}
		return obj, nil
	}
	return nil, fmt.Errorf("%s is not an object", describe(v))
}

func decodeJSON(v any, into any) error {
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(into)
}
