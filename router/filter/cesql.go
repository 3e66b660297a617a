package filter

import (
	"fmt"
	"github.com/antlr/antlr4/runtime/Go/antlr"
	"reflect"
	"strings"
	"time"

	cesql "github.com/cloudevents/sdk-go/sql/v2"
	cesqlerrors "github.com/cloudevents/sdk-go/sql/v2/errors"
	"github.com/cloudevents/sdk-go/sql/v2/gen"
	cesqlparser "github.com/cloudevents/sdk-go/sql/v2/parser"
	"github.com/cloudevents/sdk-go/v2/event"
)

type cesqlFilter struct {
	expr cesql.Expression
	reqs []requirement // what its events must meet, read from the text, for the Index
	// alts are an OR chain's disjuncts' requirements ("type = 'a' OR type LIKE 'b%'"): an event it
	// passes meets one of them, and the Index files it under each.
	alts []requirement
	text string // the expression as written, for Explain
}

// CESQL compiles a CloudEvents SQL expression. It is rejected unless it yields a boolean: Knative
// panics at delivery time on an expression such as `type`, so Switchyard refuses it at load. An
// expression that fails to evaluate for an event (a missing attribute, say) does not pass it.
func CESQL(expression string) (Filter, error) {
	expr, err := parseCESQL(expression)
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
	v, err := evaluate(expr, &probe)
	if cesqlerrors.IsMissingFunctionError(err) {
		// Such an expression never passes an event: refused at load, like a syntax error. (Only
		// a function the probe's evaluation reaches is seen; sdk-go keeps the tree to itself.)
		return nil, fmt.Errorf("CESQL expression %q: %v (CESQL's functions: ABS, INT, BOOL, STRING, LENGTH, CONCAT, CONCAT_WS, LOWER, UPPER, TRIM, LEFT, RIGHT, SUBSTRING, IS_BOOL, IS_INT)", expression, err)
	}
	if _, ok := v.(bool); !ok {
		if err != nil && v == nil {
			return nil, fmt.Errorf("CESQL expression %q cannot be evaluated: %w", expression, err)
		}
		return nil, fmt.Errorf("CESQL expression %q yields a %s, not a boolean", expression, cesqlTypeName(v))
	}
	f := cesqlFilter{expr: expr, text: expression}
	f.reqs = cesqlRequirements(expression)
	if f.reqs == nil {
		f.alts = cesqlAlternatives(expression)
	}
	return f, nil
}

// parseCESQL parses an expression; sdk-go's parser panics on some malformed input, which must not
// take the router down with it.
func parseCESQL(expression string) (expr cesql.Expression, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed expression %q", expression)
		}
	}()
	// sdk-go's Parse reports a syntax error without its position (or panics on it): find the
	// first one, with its column, first.
	if err := cesqlSyntaxError(expression); err != nil {
		return nil, err
	}
	return cesqlparser.Parse(expression)
}

// cesqlSyntaxError parses expression with sdk-go's generated CESQL grammar and an error listener of
// ours, and returns its first syntax error with where it is: "at column 17 (after "type = 'a' AND
// "): mismatched input ...". nil when the grammar accepts it.
func cesqlSyntaxError(expression string) error {
	var is antlr.CharStream = antlr.NewInputStream(expression)
	is = cesqlparser.NewCaseChangingStream(is, true)
	errs := &syntaxErrors{expression: expression}
	lexer := gen.NewCESQLParserLexer(is)
	lexer.RemoveErrorListeners()
	lexer.AddErrorListener(errs)
	p := gen.NewCESQLParserParser(antlr.NewCommonTokenStream(lexer, antlr.TokenDefaultChannel))
	p.RemoveErrorListeners()
	p.AddErrorListener(errs)
	p.Cesql()
	return errs.first
}

// syntaxErrors keeps the first syntax error antlr reports.
type syntaxErrors struct {
	antlr.DefaultErrorListener
	expression string
	first      error
}

func (s *syntaxErrors) SyntaxError(_ antlr.Recognizer, _ any, _, column int, msg string, _ antlr.RecognitionException) {
	if s.first != nil {
		return
	}
	column = min(max(column, 0), len(s.expression))
	s.first = fmt.Errorf("syntax error at column %d (after %q): %s", column+1, s.expression[:column], msg)
}

// evaluate runs expr on e, turning a panic inside the evaluator into an error.
func evaluate(expr cesql.Expression, e *event.Event) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, fmt.Errorf("evaluation panicked: %v", p)
		}
	}()
	return expr.Evaluate(*e)
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
	v, err := evaluate(f.expr, e)
	if err != nil {
		return false
	}
	b, _ := v.(bool)
	return b
}

func (f cesqlFilter) requirements() []requirement { return f.reqs }

// cesqlRequirements reads what an expression that is a plain AND chain, such as
// "type = 'a' AND size > 3", requires of its events, from its conjuncts of the forms
//
//	attribute = 'literal'              the value equals the literal
//	attribute IN ('a', 'b', ...)       the value is one of the literals
//	attribute LIKE 'abc%' / '%abc'     the value starts / ends with abc (no other wildcard)
//
// so the Index may file it under one of them (it still evaluates the whole expression). Anything
// less plain (OR, XOR, NOT anywhere at the top, escapes) requires nothing the Index can use.
func cesqlRequirements(expr string) []requirement {
	toks, ok := cesqlTokens(expr)
	if !ok {
		return nil
	}
	conj, ok := splitChain(toks, "AND")
	if !ok {
		return nil
	}
	var out []requirement
	for _, c := range conj {
		if r, ok := cesqlConjunct(c); ok {
			out = append(out, r)
		}
	}
	return out
}

// cesqlAlternatives reads what each disjunct of a plain OR chain, such as
// "type = 'a' OR source LIKE '%b'", requires, when every disjunct has one of cesqlConjunct's
// forms; nil otherwise. A chain that mixes OR with AND or XOR at the top is left alone: sdk-go's
// evaluator does not group such chains as AND-before-OR would ("a AND b OR c" is a AND (b OR c)
// there), and filing only has to be a necessary condition, which a pure chain of one operator is
// in any grouping.
func cesqlAlternatives(expr string) []requirement {
	toks, ok := cesqlTokens(expr)
	if !ok {
		return nil
	}
	disj, ok := splitChain(toks, "OR")
	if !ok || len(disj) < 2 { // one part: no OR, not a chain of them
		return nil
	}
	out := make([]requirement, 0, len(disj))
	for _, d := range disj {
		r, ok := cesqlConjunct(d)
		if !ok {
			return nil // this disjunct may pass an event that meets none of the others'
		}
		out = append(out, r)
	}
	return out
}

// splitChain splits toks at the logical operator op outside parentheses; false when another
// logical operator (AND, OR, XOR, NOT) stands there too, so that toks is not a chain of op alone.
func splitChain(toks []string, op string) ([][]string, bool) {
	depth, start := 0, 0
	var parts [][]string
	for i, t := range toks {
		switch u := strings.ToUpper(t); u {
		case "(":
			depth++
		case ")":
			depth--
		case "AND", "OR", "XOR", "NOT":
			if depth != 0 {
				continue
			}
			if u != op {
				return nil, false
			}
			parts = append(parts, toks[start:i])
			start = i + 1
		}
	}
	return append(parts, toks[start:]), true
}

// cesqlConjunct reads one conjunct's requirement, if it has one the Index can use.
func cesqlConjunct(c []string) (requirement, bool) {
	if len(c) < 3 {
		return requirement{}, false
	}
	ident, op := c[0], strings.ToUpper(c[1])
	if len(c) == 3 && op == "=" && isQuoted(ident) {
		ident, c = c[2], []string{c[2], c[1], c[0]}
	}
	if !isIdentifier(ident) {
		return requirement{}, false
	}
	key := strings.ToLower(ident)
	switch {
	case len(c) == 3 && op == "=" && isQuoted(c[2]):
		return requirement{Key: key, Kind: exactMatch, Values: []string{unquote(c[2])}}, true
	case len(c) == 3 && op == "LIKE" && isQuoted(c[2]) && key != "time":
		// LIKE compares the value as text; time is the one attribute whose text form the Index
		// and the evaluator might not agree on, so it is left to the evaluator.
		return likeRequirement(key, unquote(c[2]))
	case op == "IN" && len(c) >= 5 && c[2] == "(" && c[len(c)-1] == ")":
		var values []string
		for i, t := range c[3 : len(c)-1] {
			switch {
			case i%2 == 0 && isQuoted(t):
				values = append(values, unquote(t))
			case i%2 == 1 && t == ",":
			default:
				return requirement{}, false
			}
		}
		if len(values) == 0 || len(c)%2 == 0 { // ( a , b ): literals and commas alternate, a literal last
			return requirement{}, false
		}
		return requirement{Key: key, Kind: exactMatch, Values: values}, true
	}
	return requirement{}, false
}

// likeRequirement is what a LIKE pattern requires: a prefix ('abc%'), a suffix ('%abc'), or the
// value itself (no wildcard). Patterns with _ or more % are left to the evaluator.
func likeRequirement(key, pattern string) (requirement, bool) {
	body, kind := pattern, exactMatch
	switch {
	case strings.HasSuffix(pattern, "%") && !strings.HasPrefix(pattern, "%"):
		body, kind = pattern[:len(pattern)-1], prefixMatch
	case strings.HasPrefix(pattern, "%") && !strings.HasSuffix(pattern, "%"):
		body, kind = pattern[1:], suffixMatch
	}
	if body == "" || strings.ContainsAny(body, "%_") {
		return requirement{}, false
	}
	return requirement{Key: key, Kind: kind, Values: []string{body}}, true
}

func unquote(lit string) string { return lit[1 : len(lit)-1] }

// cesqlTokens splits expr into quoted strings, parentheses, operators and words. It gives up (false)
// on escapes, which the key extraction does not need to understand.
func cesqlTokens(expr string) ([]string, bool) {
	toks, _, ok := cesqlTokenSpans(expr)
	return toks, ok
}

// cesqlTokenSpans is cesqlTokens with where each token starts in expr.
func cesqlTokenSpans(expr string) (toks []string, starts []int, ok bool) {
	for i := 0; i < len(expr); {
		if c := expr[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			starts = append(starts, i)
		}
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			j := strings.IndexByte(expr[i+1:], c)
			if j < 0 {
				return nil, nil, false
			}
			lit := expr[i : i+j+2]
			if strings.ContainsRune(lit, '\\') {
				return nil, nil, false
			}
			toks = append(toks, lit)
			i += j + 2
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, expr[i:i+1])
			i++
		case strings.IndexByte("=<>!+-*/%", c) >= 0:
			j := i + 1
			for j < len(expr) && strings.IndexByte("=<>!", expr[j]) >= 0 {
				j++
			}
			toks = append(toks, expr[i:j])
			i = j
		default:
			j := i + 1
			for j < len(expr) && strings.IndexByte(" \t\n\r'\"(),=<>!+-*/%", expr[j]) < 0 {
				j++
			}
			toks = append(toks, expr[i:j])
			i = j
		}
	}
	return toks, starts, true
}

// cesqlConjunctTexts splits a plain AND chain ("a AND b AND c", no OR, XOR or NOT at the top)
// into its conjuncts' texts, as written; nil for anything else or a single clause.
func cesqlConjunctTexts(expr string) []string {
	toks, starts, ok := cesqlTokenSpans(expr)
	if !ok {
		return nil
	}
	parts, ok := splitChain(toks, "AND")
	if !ok || len(parts) < 2 {
		return nil
	}
	out := make([]string, 0, len(parts))
	at := 0 // index of the part's first token in toks
	for _, part := range parts {
		if len(part) == 0 {
			return nil
		}
		last := at + len(part) - 1
		out = append(out, expr[starts[at]:starts[last]+len(toks[last])])
		at = last + 2 // past the AND
	}
	return out
}

func isQuoted(t string) bool {
	return len(t) >= 2 && (t[0] == '\'' || t[0] == '"') && t[len(t)-1] == t[0]
}

func isIdentifier(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	switch strings.ToUpper(t) {
	case "TRUE", "FALSE", "AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS":
		return false
	}
	return !(t[0] >= '0' && t[0] <= '9')
}

var _ keyer = cesqlFilter{}
