package filter

import "testing"

// TestDescribe: the console shows a trigger's filter in its manifest's terms, the same text for
// the same filter however its map was ordered.
func TestDescribe(t *testing.T) {
	cesql, err := CESQL("subject LIKE 'eu-%'")
	if err != nil {
		t.Fatal(err)
	}
	if got := Describe(All()); got != "none: every event passes" {
		t.Errorf("a trigger without a filter: %s", got)
	}
	for want, f := range map[string]Filter{
		`none: every event passes`:                                                                nil,
		`attributes: {source: "/shop", type: "order.created"}`:                                    Attributes(map[string]string{"type": "order.created", "source": "/shop"}),
		`all: [exact: {type: "a"}, not: prefix: {source: "/test"}, cesql: "subject LIKE 'eu-%'"]`: All(Exact(map[string]string{"type": "a"}), Not(Prefix(map[string]string{"source": "/test"})), cesql),
		`any: [suffix: {type: ".created"}]`:                                                       Any(Suffix(map[string]string{"type": ".created"})),
	} {
		for i := 0; i < 3; i++ {
			if got := Describe(f); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		}
	}
}
