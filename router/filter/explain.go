package filter

import (
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Explain says whether f passes e and, when it does not, why: the first clause that refuses it,
// in words a person can act on (`exact: type is "order.paid", not "order.created"`). It is the
// slow path of the admin API's explain call, never of routing: Match stays allocation-free.
func Explain(f Filter, e *event.Event) (bool, string) {
	switch f := f.(type) {
	case attributesFilter:
		for _, kv := range f {
			v, ok := Attribute(e, kv.Key)
			switch {
			case !ok:
				return false, fmt.Sprintf("filter.attributes: the event has no %s", kv.Key)
			case kv.Value != "" && v != kv.Value:
				return false, fmt.Sprintf("filter.attributes: %s is %q, not %q", kv.Key, v, kv.Value)
			}
		}
		return true, ""
	case *compareFilter:
		dialect := [...]string{exactMatch: "exact", prefixMatch: "prefix", suffixMatch: "suffix"}[f.kind]
		for _, kv := range f.kvs {
			v, ok := Attribute(e, kv.Key)
			if !ok {
				return false, fmt.Sprintf("%s: the event has no %s", dialect, kv.Key)
			}
			switch {
			case f.kind == exactMatch && v != kv.Value:
				return false, fmt.Sprintf("exact: %s is %q, not %q", kv.Key, v, kv.Value)
			case f.kind == prefixMatch && !strings.HasPrefix(v, kv.Value):
				return false, fmt.Sprintf("prefix: %s %q does not start with %q", kv.Key, v, kv.Value)
			case f.kind == suffixMatch && !strings.HasSuffix(v, kv.Value):
				return false, fmt.Sprintf("suffix: %s %q does not end with %q", kv.Key, v, kv.Value)
			}
		}
		return true, ""
	case allFilter:
		for i, c := range f {
			if ok, why := Explain(c, e); !ok {
				return false, fmt.Sprintf("all[%d]: %s", i, why)
			}
		}
		return true, ""
	case anyFilter:
		whys := make([]string, 0, len(f))
		for i, c := range f {
			ok, why := Explain(c, e)
			if ok {
				return true, ""
			}
			whys = append(whys, fmt.Sprintf("[%d] %s", i, why))
		}
		if len(f) == 0 {
			return false, "any: no filters, so nothing passes"
		}
		return false, "any: none passes: " + strings.Join(whys, "; ")
	case notFilter:
		if ok, _ := Explain(f.child, e); ok {
			return false, "not: the filter inside passes the event"
		}
		return true, ""
	case cesqlFilter:
		v, err := evaluate(f.expr, e)
		switch b, isBool := v.(bool); {
		case err != nil:
			return false, fmt.Sprintf("cesql %q: %v (an expression that fails does not pass the event)", f.text, err)
		case !isBool:
			return false, fmt.Sprintf("cesql %q is %v, not a boolean", f.text, v)
		case !b:
			return false, cesqlFalseClause(f.text, e)
		}
		return true, ""
	}
	if f.Match(e) {
		return true, ""
	}
	return false, "the filter does not pass the event"
}

// cesqlFalseClause says which clause of a false CESQL expression refuses e: in a plain AND chain,
// the first conjunct that is false or fails; otherwise the expression as a whole.
func cesqlFalseClause(text string, e *event.Event) string {
	for _, c := range cesqlConjunctTexts(text) {
		expr, err := parseCESQL(c)
		if err != nil {
			break
		}
		v, err := evaluate(expr, e)
		if err != nil {
			return fmt.Sprintf("cesql %q: %s fails: %v (an expression that fails does not pass the event)", text, c, err)
		}
		if b, isBool := v.(bool); isBool && !b {
			why := fmt.Sprintf("cesql %q: %s is false", text, c)
			if f := strings.Fields(c); len(f) == 2 && strings.EqualFold(f[0], "EXISTS") {
				why += fmt.Sprintf(" (the event has no %s)", strings.ToLower(f[1]))
			}
			return why
		}
	}
	return fmt.Sprintf("cesql %q is false", text)
}
