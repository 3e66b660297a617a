package filter

import (
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func TestExplainSaysWhichClauseRefuses(t *testing.T) {
	e := event.New()
	e.SetID("1")
	e.SetSource("/shop/eu")
	e.SetType("order.created")
	e.SetExtension("region", "eu")
	mustCESQL := func(s string) Filter {
		f, err := CESQL(s)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, c := range []struct {
		f    Filter
		pass bool
		why  string
	}{
		{Attributes(map[string]string{"type": "order.created"}), true, ""},
		{Attributes(map[string]string{"type": "order.paid"}), false, `filter.attributes: type is "order.created", not "order.paid"`},
		{Attributes(map[string]string{"subject": ""}), false, "filter.attributes: the event has no subject"},
		{All(Exact(map[string]string{"region": "eu"}), Prefix(map[string]string{"source": "/billing"})), false, `all[1]: prefix: source "/shop/eu" does not start with "/billing"`},
		{Suffix(map[string]string{"type": ".paid"}), false, `suffix: type "order.created" does not end with ".paid"`},
		{Any(Exact(map[string]string{"type": "a"}), Exact(map[string]string{"type": "b"})), false, `any: none passes: [0] exact: type is "order.created", not "a"; [1] exact: type is "order.created", not "b"`},
		{Any(Exact(map[string]string{"type": "a"}), Exact(map[string]string{"region": "eu"})), true, ""},
		{Not(Exact(map[string]string{"region": "eu"})), false, "not: the filter inside passes the event"},
		{mustCESQL("region = 'us' AND type LIKE 'order.%'"), false, `cesql "region = 'us' AND type LIKE 'order.%'": region = 'us' is false`},
		{mustCESQL("type LIKE 'order.%'  AND (region = 'eu' AND EXISTS amount) AND INT(region) > 1"), false, `cesql "type LIKE 'order.%'  AND (region = 'eu' AND EXISTS amount) AND INT(region) > 1": (region = 'eu' AND EXISTS amount) is false`},
		{mustCESQL("type = 'order.created' AND EXISTS amount"), false, `cesql "type = 'order.created' AND EXISTS amount": EXISTS amount is false (the event has no amount)`},
		{mustCESQL("region = 'us' OR type = 'x'"), false, `cesql "region = 'us' OR type = 'x'" is false`},
		{mustCESQL("region = 'eu'"), true, ""},
		{All(), true, ""},
	} {
		pass, why := Explain(c.f, &e)
		if pass != c.pass || why != c.why {
			t.Errorf("Explain = %v, %q; want %v, %q", pass, why, c.pass, c.why)
		}
		if pass != c.f.Match(&e) {
			t.Errorf("Explain says %v where Match says %v (%q)", pass, c.f.Match(&e), why)
		}
	}
	// A CESQL expression that cannot be evaluated for this event says so.
	if pass, why := Explain(mustCESQL("INT(subject) > 3"), &e); pass || !strings.Contains(why, "an expression that fails does not pass the event") && !strings.Contains(why, "is false") {
		t.Errorf("failing CESQL: %v %q", pass, why)
	}
}
