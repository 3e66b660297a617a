package delivery

import (
	"math/rand/v2"
	"time"
)

// Backoff is how the wait before a retry grows.
type Backoff uint8

const (
	// Exponential waits delay·2^(n−1) before retry n: 0.2s, 0.4s, 0.8s, ... for PT0.2S.
	Exponential Backoff = iota
	// Linear waits delay·n before retry n: 0.2s, 0.4s, 0.6s, ... for PT0.2S.
	Linear
)

func (b Backoff) String() string {
	if b == Linear {
		return "linear"
	}
	return "exponential"
}

// Format is the CloudEvents HTTP content mode used towards a subscriber.
type Format uint8

const (
	// Binary puts attributes in ce- headers and the data in the body (Knative's default).
	Binary Format = iota
	// Structured sends the whole event as application/cloudevents+json.
	Structured
)

func (f Format) String() string {
	if f == Structured {
		return "json"
	}
	return "binary"
}

// Policy is a trigger's fully resolved delivery: defaults, then the broker's delivery, then the
// trigger's, merged field by field (config does the merge).
type Policy struct {
	// Retry is the number of retries after the first attempt.
	Retry   int
	Backoff Backoff
	Delay   time.Duration
	// BackoffMax caps the wait Backoff and Delay give a retry (Knative 1.22's alpha
	// delivery.backoffMax); 0: no cap of its own (maxWait still holds). A Retry-After is capped by
	// RetryAfterMax instead.
	BackoffMax time.Duration
	// Timeout bounds each attempt; 0 means no bound.
	Timeout time.Duration
	// RetryAfterMax caps how long a Retry-After header on 429 and 503 may make us wait; 0 ignores
	// the header.
	RetryAfterMax time.Duration
	// DeadLetterSink receives the event after the last failed attempt; "" means none.
	DeadLetterSink string
	Format         Format
}

// maxJitter caps the random extra wait added to each backoff, which spreads retries of many
// events that failed together.
const maxJitter = 100 * time.Millisecond

// Wait returns how long to wait before retry n (n ≥ 1) without jitter, at most BackoffMax.
func (p *Policy) Wait(n int) time.Duration {
	w := p.uncapped(n)
	if p.BackoffMax > 0 && w > p.BackoffMax {
		return p.BackoffMax
	}
	return w
}

func (p *Policy) uncapped(n int) time.Duration {
	if n < 1 {
		return 0
	}
	if p.Backoff == Linear {
		return p.Delay * time.Duration(n)
	}
	shift := n - 1
	if shift > 30 { // beyond 2^30 the product overflows; such waits are capped anyway
		shift = 30
	}
	w := p.Delay << shift
	if w < 0 || w > maxWait {
		return maxWait
	}
	return w
}

// maxWait bounds a single backoff wait so a large retry count cannot park an event for days.
const maxWait = time.Hour

// jitter returns a random extra wait of up to 10% of w, at most maxJitter.
func jitter(w time.Duration) time.Duration {
	j := w / 10
	if j > maxJitter {
		j = maxJitter
	}
	if j <= 0 {
		return 0
	}
	return rand.N(j)
}

// RetryAfterWait combines the backoff wait with a server's Retry-After: the larger of the backoff
// and the Retry-After capped at RetryAfterMax. retryAfter < 0 means the header was absent or
// unusable.
func (p *Policy) RetryAfterWait(backoff, retryAfter time.Duration) time.Duration {
	if p.RetryAfterMax <= 0 || retryAfter < 0 {
		return backoff
	}
	if retryAfter > p.RetryAfterMax {
		retryAfter = p.RetryAfterMax
	}
	if retryAfter > backoff {
		return retryAfter
	}
	return backoff
}
