package admin

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

// eventFilter is what the event listing, the live tail and redrive by filter narrow outcomes by,
// read from the same query parameters in the API and the console.
type eventFilter struct {
	Trigger      router.TriggerRef
	Broker       router.BrokerRef
	Status       router.Status
	Type, Source string
	Since, Until time.Time
}

// parseEventFilter reads trigger=, broker=, status=, type=, source=, since= and until=; its
// errors are the text of a 400.
func parseEventFilter(qs url.Values) (eventFilter, error) {
	var f eventFilter
	if v := qs.Get("trigger"); v != "" {
		ref, ok := router.ParseRef(v)
		if !ok {
			return f, fmt.Errorf("trigger %q: want NAMESPACE/NAME", v)
		}
		f.Trigger = router.TriggerRef(ref)
	}
	if v := qs.Get("broker"); v != "" {
		ref, ok := router.ParseRef(v)
		if !ok {
			return f, fmt.Errorf("broker %q: want NAMESPACE/NAME", v)
		}
		f.Broker = ref
	}
	f.Status, f.Type, f.Source = router.Status(qs.Get("status")), qs.Get("type"), qs.Get("source")
	switch f.Status {
	case "", router.StatusDelivered, router.StatusDeadLettered, router.StatusFailed, router.StatusReplyFailed, router.StatusUnmatched:
	default:
		return f, fmt.Errorf("status %q: want delivered, dead-lettered, failed, reply-failed or unmatched", f.Status)
	}
	for _, tf := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := qs.Get(tf.name); v != "" {
			t, err := parseTime(v)
			if err != nil {
				return f, fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-11-22T08:00:00Z, or a duration back from now such as 10m", tf.name, v)
			}
			*tf.to = t
		}
	}
	return f, nil
}

// parseTime reads RFC 3339, the "2026-11-22T08:00" an HTML datetime-local input sends (UTC), and
// a duration back from now ("10m").
func parseTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a time")
}

func (f eventFilter) query() router.OutcomeQuery {
	return router.OutcomeQuery{Trigger: f.Trigger, Broker: f.Broker, Status: f.Status, Type: f.Type, Source: f.Source, Since: f.Since, Until: f.Until}
}

func (f eventFilter) redrive(eventID string) router.RedriveQuery {
	return router.RedriveQuery{EventID: eventID, Broker: f.Broker, Status: f.Status, Type: f.Type, Source: f.Source, Since: f.Since, Until: f.Until}
}

// values is f as query parameters (for links that keep the filter).
func (f eventFilter) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Trigger != (router.TriggerRef{}) {
		v.Set("trigger", f.Trigger.String())
	}
	if f.Broker != (router.BrokerRef{}) {
		v.Set("broker", f.Broker.String())
	}
	set("status", string(f.Status))
	set("type", f.Type)
	set("source", f.Source)
	if !f.Since.IsZero() {
		v.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		v.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	return v
}

// describe is f for a person: "trigger shop/orders, status failed".
func (f eventFilter) describe() string {
	var parts []string
	vs := f.values()
	for _, k := range []string{"trigger", "broker", "status", "type", "source", "since", "until"} {
		if v := vs.Get(k); v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}
