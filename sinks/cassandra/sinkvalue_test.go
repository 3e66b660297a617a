package cassandra

import (
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"gopkg.in/inf.v0"
)

func sampleEvent(t *testing.T) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("e-1")
	e.SetSource("/shop")
	e.SetType("order.created")
	e.SetTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	e.SetExtension("tenant", "acme")
	if err := e.SetData("application/json", []byte(`{"order":{"id":"o-1","qty":3,"big":"123456789012345678901234567890","price":"19.99","tags":["a","b"],"attrs":{"k":"v"},"lines":[{"sku":"x"}],"none":null}}`)); err != nil {
		t.Fatal(err)
	}
	return &e
}

func TestValueAt(t *testing.T) {
	e := sampleEvent(t)
	for path, want := range map[string]string{
		"id": "e-1", "type": "order.created", "tenant": "acme", "data.order.id": "o-1", "data.order.qty": "3",
		"data.order.lines.0.sku": "x", "time": "2026-12-01T10:00:00Z",
	} {
		v, err := valueAt(e, path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		got, _ := toCQL(v, cqlType{name: "text"})
		if got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	for _, path := range []string{"subject", "nope", "data.order.missing", "data.order.lines.7", "data.order.none", "data.order.id.deeper"} {
		if _, err := valueAt(e, path); !errors.Is(err, errMissing) {
			t.Errorf("%s: %v, want errMissing", path, err)
		}
	}
	if v, _ := valueAt(e, "event"); !strings.Contains(v.(string), `"id":"e-1"`) {
		t.Errorf("event: %v", v)
	}
}

func TestToCQL(t *testing.T) {
	e := sampleEvent(t)
	at := func(p string) any { v, _ := valueAt(e, p); return v }
	typ := func(s string) cqlType {
		ct, err := parseCQLType(s)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	if v, err := toCQL(at("data.order.qty"), typ("int")); err != nil || v != int64(3) {
		t.Errorf("int: %v %v", v, err)
	}
	if v, err := toCQL(at("data.order.big"), typ("varint")); err != nil || v.(*big.Int).String() != "123456789012345678901234567890" {
		t.Errorf("varint: %v %v", v, err)
	}
	if v, err := toCQL(at("data.order.price"), typ("decimal")); err != nil || v.(*inf.Dec).String() != "19.99" {
		t.Errorf("decimal: %v %v", v, err)
	}
	if v, err := toCQL(at("data.order.tags"), typ("frozen<set<text>>")); err != nil || len(v.([]any)) != 2 {
		t.Errorf("set: %v %v", v, err)
	}
	if v, err := toCQL(at("data.order.attrs"), typ("map<text, text>")); err != nil || v.(map[any]any)["k"] != "v" {
		t.Errorf("map: %v %v", v, err)
	}
	if v, err := toCQL(at("time"), typ("timestamp")); err != nil || !v.(time.Time).Equal(e.Time()) {
		t.Errorf("timestamp: %v %v", v, err)
	}
	if v, err := toCQL(at("data"), typ("blob")); err != nil || len(v.([]byte)) == 0 {
		t.Errorf("blob: %v %v", v, err)
	}
	for _, c := range []struct {
		path, typ, want string
	}{
		{"data.order.id", "int", `"o-1" is not a whole number`},
		{"data.order.big", "int", "is not a whole number that fits 64 bits"},
		{"data.order.qty", "uuid", "is not a UUID"},
		{"data.order.id", "timestamp", "is not an RFC 3339 time"},
		{"data.order.tags", "map<text, text>", "is not an object"},
		{"data.order.attrs", "list<int>", "is not an array"},
		{"data.order.tags", "list<int>", `element 0: "a" is not a whole number`},
		{"data.order.id", "boolean", `"o-1" is not true or false`},
	} {
		if _, err := toCQL(at(c.path), typ(c.typ)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s as %s: %v, want %q", c.path, c.typ, err, c.want)
		}
	}
	if _, err := toCQL(json.Number("1099511627776"), typ("int")); err == nil || !strings.Contains(err.Error(), "is out of range for int") {
		t.Errorf("a number too large for int: %v", err)
	}
	if _, err := parseCQLType("duration"); err == nil {
		t.Error("an unsupported type was accepted")
	}
}

func TestCheckPath(t *testing.T) {
	for p, bad := range map[string]bool{"id": false, "data": false, "data.a.0.b": false, "event": false, "tenant": false,
		"": true, "data..a": true, "id.x": true, "Tenant": true} {
		if got := checkPath(p) != ""; got != bad {
			t.Errorf("checkPath(%q) = %q", p, checkPath(p))
		}
	}
}
