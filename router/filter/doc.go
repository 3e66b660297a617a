// Package filter implements Knative's trigger filter dialects over CloudEvents: the legacy
// filter.attributes map and the filters array (exact, prefix, suffix, all, any, not, cesql), and an
// Index that finds the triggers an event may match without evaluating every trigger's filter.
//
// Filters are compiled once per configuration and are immutable, so one compiled set is shared by
// every goroutine routing events.
package filter
