package schedule

import (
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, spec, tz string) Schedule {
	t.Helper()
	s, err := Parse(spec, tz)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", spec, tz, err)
	}
	return s
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNextAndPrevious(t *testing.T) {
	for _, c := range []struct {
		spec, tz, from, next, prev string
	}{
		{"*/5 * * * *", "", "2026-12-01T10:02:30Z", "2026-12-01T10:05:00Z", "2026-12-01T10:00:00Z"},
		{"*/5 * * * *", "", "2026-12-01T10:05:00Z", "2026-12-01T10:10:00Z", "2026-12-01T10:05:00Z"},
		// 09:00 in Tokyo is midnight UTC; the timezone field and CRON_TZ= say the same.
		{"0 9 * * *", "Asia/Tokyo", "2026-12-01T12:00:00Z", "2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"CRON_TZ=Asia/Tokyo 0 9 * * *", "", "2026-12-01T12:00:00Z", "2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"@hourly", "", "2026-12-01T10:59:59Z", "2026-12-01T11:00:00Z", "2026-12-01T10:00:00Z"},
		// A leap day, four years apart from the previous one: Previous looks back far enough.
		{"0 0 29 2 *", "UTC", "2028-03-01T00:00:00Z", "2032-02-29T00:00:00Z", "2028-02-29T00:00:00Z"},
		// @every is anchored, not counted from the process start.
		{"@every 10s", "", "2026-12-01T10:00:03Z", "2026-12-01T10:00:10Z", "2026-12-01T10:00:00Z"},
	} {
		s := mustParse(t, c.spec, c.tz)
		from := at(c.from)
		if got := s.Next(from); !got.Equal(at(c.next)) {
			t.Errorf("%q tz %q: Next(%s) = %s, want %s", c.spec, c.tz, c.from, got.UTC().Format(time.RFC3339), c.next)
		}
		if got := s.Previous(from); !got.Equal(at(c.prev)) {
			t.Errorf("%q tz %q: Previous(%s) = %s, want %s", c.spec, c.tz, c.from, got.UTC().Format(time.RFC3339), c.prev)
		}
	}
}

func TestPreviousLooksBackAYear(t *testing.T) {
	// A yearly tick missed in January is found by a replica that starts in August.
	if got := mustParse(t, "@yearly", "UTC").Previous(at("2026-08-15T00:00:00Z")); !got.Equal(at("2026-01-01T00:00:00Z")) {
		t.Errorf("@yearly before 2026-08-15: %s, want 2026-01-01", got)
	}
}

func TestEveryAgreesAcrossStarts(t *testing.T) {
	s := mustParse(t, "@every 1m", "")
	a, b := s.Next(at("2026-12-01T10:00:07Z")), s.Next(at("2026-12-01T10:00:41Z"))
	if !a.Equal(b) {
		t.Fatalf("two replicas started 34 s apart disagree on the next tick: %s and %s", a, b)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ spec, tz, want string }{
		{"* * * *", "", "not a cron schedule"},
		{"61 * * * *", "", "not a cron schedule"},
		{"* * * * *", "Mars/Olympus", "unknown timezone"},
		{"CRON_TZ=UTC * * * * *", "Europe/Paris", "given twice"},
		{"0 0 30 2 *", "", "never ticks"},
	} {
		_, err := Parse(c.spec, c.tz)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error saying %q", c.spec, c.tz, err, c.want)
		}
	}
}
