package broker

import (
	"context"
	"testing"
	"time"
)

// A lane keeps a worker with nothing to do for workerLinger, so an event arriving meanwhile does
// not start a goroutine; after the linger an idle lane has no goroutine left.
func TestLaneWorkersLingerThenExit(t *testing.T) {
	defer func(d time.Duration) { workerLinger = d }(workerLinger)
	workerLinger = 100 * time.Millisecond
	ran := make(chan struct{}, 16)
	release := make(chan struct{})
	l := newLane(context.Background(), 4, 16, 0, func(context.Context, task) bool {
		ran <- struct{}{}
		<-release
		return false
	})
	b := &brokerState{}
	submit := func() {
		t.Helper()
		if err := l.submit(context.Background(), task{b: b}); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() (running, idle, started int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.running, l.idle, l.started
	}

	close(release) // tasks finish at once from here on
	for i := 0; i < 5; i++ {
		submit()
		<-ran
		time.Sleep(5 * time.Millisecond)
	}
	if running, idle, started := counts(); started != 1 || running != 1 || idle != 1 {
		t.Errorf("five events one after another: started %d workers (%d running, %d idle), want 1 kept idle", started, running, idle)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		running, idle, _ := counts()
		if running == 0 && idle == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the linger: %d workers running, %d idle, want none", running, idle)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Under a burst the lane starts no more than its concurrency, and idle workers take new work.
func TestLaneBurstUsesAtMostConcurrency(t *testing.T) {
	defer func(d time.Duration) { workerLinger = d }(workerLinger)
	workerLinger = time.Minute
	release := make(chan struct{})
	done := make(chan struct{}, 64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // lets the lingering workers go
	l := newLane(ctx, 4, 64, 0, func(context.Context, task) bool {
		<-release
		done <- struct{}{}
		return false
	})
	b := &brokerState{}
	for round := 0; round < 3; round++ {
		for i := 0; i < 20; i++ {
			if err := l.submit(context.Background(), task{b: b}); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 20; i++ {
			if round == 0 && i == 0 {
				close(release)
			}
			<-done
		}
	}
	l.mu.Lock()
	started := l.started
	l.mu.Unlock()
	if started != 4 {
		t.Errorf("three bursts of 20 on a lane of concurrency 4 started %d workers, want 4", started)
	}
}

// TestSlotsAreGivenBackWhateverTheBroker (issue #18, item 4): a windowed (Kafka-class) broker's
// dispatch enqueues without slots, but a redrive submits, taking one; the worker gave slots back
// only for in-memory brokers, so after concurrency+pending redrives every later one blocked for the
// life of the process.
func TestSlotsAreGivenBackWhateverTheBroker(t *testing.T) {
	laneCtx, stop := context.WithCancel(context.Background())
	defer stop() // lets the lingering worker go
	l := newLane(laneCtx, 1, 1, 0, func(context.Context, task) bool { return false })
	windowed := &brokerState{windowed: true}
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := l.submit(ctx, task{b: windowed})
		cancel()
		if err != nil {
			t.Fatalf("submit %d of a windowed broker's task: %v (its slots were never given back)", i, err)
		}
	}
	for range 5 { // and the dispatch's own enqueues take none
		l.enqueue(task{b: windowed})
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(l.slots) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(l.slots); n != 0 {
		t.Errorf("%d slots still taken after every task finished", n)
	}
}
