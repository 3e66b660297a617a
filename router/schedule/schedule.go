// Package schedule reads the cron schedules of PingSources: Knative's syntax (five fields, the
// @hourly-style descriptors and @every, an optional CRON_TZ= or TZ= prefix) and tick times that
// every replica computes alike.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule says when a PingSource ticks.
type Schedule struct {
	spec cron.Schedule
	// every is an @every schedule's period: its ticks are whole multiples of it from a fixed
	// origin (Go's zero time, as time.Truncate counts), not counted from when the process started
	// (cron's own @every), so that replicas started at different times agree on every tick and
	// can claim it.
	every time.Duration
}

// Parse reads spec, Knative's PingSource schedule syntax. A timezone, when not empty, is applied
// as Knative applies spec.timezone: a CRON_TZ= prefix, so a schedule that carries its own prefix
// too is refused.
func Parse(spec, timezone string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	if timezone != "" {
		if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
			return Schedule{}, fmt.Errorf("a timezone is given twice: in the schedule (%s) and as timezone", strings.Fields(spec)[0])
		}
		if _, err := time.LoadLocation(timezone); err != nil {
			return Schedule{}, fmt.Errorf("unknown timezone %q (a tz database name such as Europe/Paris)", timezone)
		}
		spec = "CRON_TZ=" + timezone + " " + spec
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return Schedule{}, fmt.Errorf("%q is not a cron schedule: %v", spec, err)
	}
	out := Schedule{spec: s}
	if c, ok := s.(cron.ConstantDelaySchedule); ok {
		out.every = c.Delay // whole seconds, at least one: cron rounds @every so
	}
	if !out.Ticks(time.Now()) {
		return Schedule{}, fmt.Errorf("%q never ticks (no such date in the next five years)", spec)
	}
	return out, nil
}

// Next is the first tick strictly after t.
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		return t.Truncate(s.every).Add(s.every)
	}
	return s.spec.Next(t)
}

// Previous is the last tick at or before t, or the zero time when there is none within the year
// before t (a schedule such as "0 0 29 2 *" can be that far apart).
func (s Schedule) Previous(t time.Time) time.Time {
	if s.every > 0 {
		return t.Truncate(s.every)
	}
	// cron only counts forward: step back until a window holds a tick, then walk it. The last
	// window is the whole year (and a bit) before t.
	const limit = 400 * 24 * time.Hour
	for span := time.Minute; ; span = min(span*4, limit) {
		from := t.Add(-span)
		tick := s.spec.Next(from)
		if tick.IsZero() {
			return time.Time{} // a schedule that never ticks (30 February)
		}
		if tick.After(t) {
			if span == limit {
				return time.Time{}
			}
			continue
		}
		for next := s.spec.Next(tick); !next.IsZero() && !next.After(t); next = s.spec.Next(tick) {
			tick = next
		}
		return tick
	}
}

// Ticks reports whether s ticks at all after t: cron accepts schedules that never match (30
// February), for which Next answers the zero time.
func (s Schedule) Ticks(t time.Time) bool { return !s.Next(t).IsZero() }

// IsZero reports whether s was never parsed.
func (s Schedule) IsZero() bool { return s.spec == nil }
