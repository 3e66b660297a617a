package filter

import (
	"fmt"
	"reflect"
	"time"

	cesql "github.com/cloudevents/sdk-go/sql/v2"
	cesqlparser "github.com/cloudevents/sdk-go/sql/v2/parser"
	"github.com/cloudevents/sdk-go/v2/event"
)

type cesqlFilter struct{ expr cesql.Expression }

// CESQL compiles a CloudEvents SQL expression. It is rejected unless it yields a boolean: Knative
// panics at delivery time on an expression such as `type`, so Switchyard refuses it at load. An
// expression that fails to evaluate for an event (a missing attribute, say) does not pass it.
func CESQL(expression string) (Filter, error) {
	expr, err := cesqlparser.Parse(expression)
	if err != nil {
		return nil, fmt.Errorf("invalid CESQL expression: %w", err)
	}
	// A bare attribute reference yields that attribute's value, a string for all but boolean
	// extensions; evaluating it on a probe event can't tell, so it is refused outright.
	if reflect.TypeOf(expr).Name() == "identifierExpression" {
		return nil, fmt.Errorf("CESQL expression %q is an attribute, not a boolean condition: compare it, e.g. %s = 'value', or test it with EXISTS %s", expression, expression, expression)
	}
	// Every other expression has a static result type; sdk-go returns a zero value of that type
	// even when evaluation fails, so one evaluation on a probe event reveals it.
	probe := event.New()
	probe.SetID("probe")
	probe.SetSource("probe")
	probe.SetType("probe")
	probe.SetTime(time.Unix(0, 0))
	v, _ := expr.Evaluate(probe)
	if _, ok := v.(bool); !ok {
		return nil, fmt.Errorf("CESQL expression %q yields a %s, not a boolean", expression, cesqlTypeName(v))
	}
	return cesqlFilter{expr}, nil
}

func cesqlTypeName(v any) string {
	switch v.(type) {
	case int32:
		return "integer"
	case string:
		return "string"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func (f cesqlFilter) Match(e *event.Event) bool {
	v, err := f.expr.Evaluate(*e)
	if err != nil {
		return false
	}
	b, _ := v.(bool)
	return b
}

var _ Filter = cesqlFilter{}
