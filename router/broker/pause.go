package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// ErrPausedByManifest: a trigger paused by its manifest's switchyard.dev/paused annotation is
// resumed by changing the manifest, not by an operator's call (the next reload would pause it
// again).
var ErrPausedByManifest = errors.New("paused by its manifest")

// pauseGate holds a trigger's lanes while it is paused, by its manifest or by an operator. A lane
// worker waits at the gate before each delivery attempt it starts; attempts under way finish.
// It lives in triggerStats, so a reload keeps an operator's pause.
type pauseGate struct {
	paused atomic.Bool // the fast path of wait

	mu                   sync.Mutex
	byManifest, operator bool
	open                 chan struct{} // closed when not paused
}

func newPauseGate() *pauseGate {
	g := &pauseGate{open: make(chan struct{})}
	close(g.open)
	return g
}

// set records who pauses the trigger and opens or closes the gate accordingly.
func (g *pauseGate) set(byManifest, operator bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byManifest, g.operator = byManifest, operator
	paused := byManifest || operator
	if paused == g.paused.Load() {
		return
	}
	g.paused.Store(paused)
	if paused {
		g.open = make(chan struct{})
	} else {
		close(g.open)
	}
}

// manifest records whether the trigger's manifest pauses it, keeping an operator's pause.
func (g *pauseGate) manifest(paused bool) {
	g.mu.Lock()
	operator := g.operator
	g.mu.Unlock()
	g.set(paused, operator)
}

// who says who pauses the trigger: "manifest", "operator", or "" when it is not paused.
func (g *pauseGate) who() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.byManifest:
		return "manifest"
	case g.operator:
		return "operator"
	}
	return ""
}

// wait returns once the gate is open, or when ctx ends (shutdown: the task is then run, and
// recorded as failed for redrive).
func (g *pauseGate) wait(ctx context.Context) {
	if !g.paused.Load() {
		return
	}
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
	}
}

// PauseTrigger holds ref's deliveries until ResumeTrigger, keeping its events: in memory, its
// bounded backlog (past it, events are recorded as failed, for redrive); on a Kafka-class broker,
// in its park topic. An operator's pause lasts until resumed or until the process restarts (the
// switchyard.dev/paused annotation is the pause that survives restarts).
func (r *Router) PauseTrigger(ref router.TriggerRef) error {
	_, t := r.findTrigger(ref)
	if t == nil {
		return fmt.Errorf("%w: %s", ErrTriggerNotFound, ref)
	}
	t.stats.gate.set(t.cfg.Paused, true)
	r.logger.Info("trigger paused by an operator: its events wait", zap.String("trigger", ref.String()))
	return nil
}

// ResumeTrigger ends an operator's pause of ref: its waiting events are delivered, then the new
// ones. ErrPausedByManifest when its manifest pauses it.
func (r *Router) ResumeTrigger(ref router.TriggerRef) error {
	_, t := r.findTrigger(ref)
	if t == nil {
		return fmt.Errorf("%w: %s", ErrTriggerNotFound, ref)
	}
	if t.cfg.Paused {
		return fmt.Errorf("%w: remove the %s annotation of trigger %s to resume it", ErrPausedByManifest, "switchyard.dev/paused", ref)
	}
	t.stats.gate.set(false, false)
	r.logger.Info("trigger resumed by an operator", zap.String("trigger", ref.String()))
	return nil
}
