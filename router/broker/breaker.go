package broker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router/config"
)

// breaker is a trigger's circuit breaker (switchyard.dev/circuit-breaker, docs/config.md#circuit-breaker): after
// its subscriber failed Failures attempts in a row it opens, and no attempt starts for Cooldown;
// then it is half-open and one attempt goes through, the probe: a success closes it, a failure
// opens it again for another cool-down. While it is open the trigger's events wait where a
// paused trigger's do (its lane in memory, within its bounded backlog; its park topic on Kafka).
//
// A failure is what says the subscriber is unwell: no answer (a refused connection, a timeout),
// 5xx, 429 or 408. Other 4xx answers are about the event, not the subscriber, and count as
// successes here (they still fail the event, as without a breaker).
type breaker struct {
	spec   config.CircuitBreaker
	logger *zap.Logger
	name   string

	mu       sync.Mutex
	state    circuitState
	failures int       // in a row, while closed
	until    time.Time // when an open breaker turns half-open
	probing  bool      // the half-open breaker's probe is under way
	changed  chan struct{}
	opened   uint64 // times it opened
}

type circuitState int

const (
	circuitClosed circuitState = iota
	circuitOpen
	circuitHalfOpen
)

func (s circuitState) String() string {
	switch s {
	case circuitOpen:
		return "open"
	case circuitHalfOpen:
		return "half-open"
	}
	return "closed"
}

func newBreaker(spec config.CircuitBreaker, name string, logger *zap.Logger) *breaker {
	return &breaker{spec: spec, name: name, logger: logger, changed: make(chan struct{})}
}

// enter waits until an attempt may start: at once while closed; while open, until the cool-down
// ends; while half-open, until the probe's result (or becomes the probe itself). It reports
// whether the attempt is the probe. On ctx's end (shutdown) it returns at once: the task then
// runs and is recorded as failed, for redrive.
func (b *breaker) enter(ctx context.Context) (probe bool) {
	for {
		b.mu.Lock()
		switch b.state {
		case circuitClosed:
			b.mu.Unlock()
			return false
		case circuitOpen:
			if !time.Now().Before(b.until) {
				b.setLocked(circuitHalfOpen)
				b.mu.Unlock()
				continue
			}
		case circuitHalfOpen:
			if !b.probing {
				b.probing = true
				b.mu.Unlock()
				return true
			}
		}
		changed, wait := b.changed, time.Until(b.until)
		b.mu.Unlock()
		var timer *time.Timer
		var fired <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fired = timer.C
		}
		select {
		case <-changed:
		case <-fired:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

// observe takes one attempt's answer: code 0 when none came.
func (b *breaker) observe(probe bool, code int) {
	failed := code == 0 || code >= 500 || code == 429 || code == 408
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case probe && failed:
		b.probing = false
		b.openLocked()
	case probe:
		b.probing, b.failures = false, 0
		b.setLocked(circuitClosed)
		b.logger.Info("circuit breaker closed: the subscriber answered the probe", zap.String("trigger", b.name))
	case b.state != circuitClosed:
		// an attempt started before the breaker opened: the probe decides
	case failed:
		b.failures++
		if b.failures >= b.spec.Failures {
			b.openLocked()
		}
	default:
		b.failures = 0
	}
}

func (b *breaker) openLocked() {
	b.until = time.Now().Add(b.spec.Cooldown)
	b.opened++
	b.setLocked(circuitOpen)
	b.logger.Warn("circuit breaker open: deliveries to the subscriber stop for the cool-down, its events wait",
		zap.String("trigger", b.name), zap.Int("failures_in_a_row", b.failures), zap.Duration("cooldown", b.spec.Cooldown))
	b.failures = 0
}

// setLocked changes the state and wakes whoever waits in enter.
func (b *breaker) setLocked(s circuitState) {
	b.state = s
	close(b.changed)
	b.changed = make(chan struct{})
}

// status is the breaker's state and how often it opened.
func (b *breaker) status() (string, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.state
	if s == circuitOpen && !time.Now().Before(b.until) {
		s = circuitHalfOpen // turns so at the next attempt
	}
	return s.String(), b.opened
}
