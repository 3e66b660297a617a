package broker

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Shutdown stops admitting events, waits until every admitted event's fate is final or ctx ends,
// then aborts what is left: deliveries in progress and events still queued are recorded as failed.
// It returns the number of events that had to be aborted.
func (r *Router) Shutdown(ctx context.Context) int64 {
	r.applyMu.Lock()
	r.closing.Store(true)
	brokers := *r.brokers.Load()
	r.applyMu.Unlock()
	for _, b := range brokers {
		b.closeIngress()
	}
	drained := make(chan struct{}) // every log's reader has handed over what it read
	go func() { r.dispatch.Wait(); close(drained) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-drained:
			if r.pending.Load() == 0 {
				r.cancelRun()
				return 0
			}
		default:
		}
		select {
		case <-ctx.Done():
			aborted := r.pending.Load()
			for _, b := range brokers {
				aborted += int64(b.queue.Len())
			}
			r.logger.Warn("shutdown grace period over: recording unfinished events as failed", zap.Int64("events", aborted))
			r.cancelRun()
			<-drained
			for r.pending.Load() > 0 { // aborted deliveries return promptly once cancelled
				<-tick.C
			}
			return aborted
		case <-tick.C:
		}
	}
}
