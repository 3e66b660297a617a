package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a configuration, located by file, line and field path.
type Error struct {
	File string
	Line int
	// Path is the field path within the document, such as spec.filters[0].prefix.
	Path string
	Msg  string
}

func (e *Error) Error() string {
	at := e.File
	if e.Line > 0 { // 0: not in a file's text (a flag, a whole file)
		at = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", at, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", at, e.Path, e.Msg)
}

// Errors is every problem found in one load, in file and line order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
