package e2e

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadSender sends numbered events from several goroutines to routers that may be killed while
// it sends: what is answered 202 is accepted, what runs into a dead router is not. The tests of
// kill -9 then check that every accepted event was delivered.
type loadSender struct {
	path    string
	workers int
	event   func(i int64) ceRequest
	next    atomic.Int64
	ids     sync.Map // accepted event ids
}

// sendUpTo sends the events numbered up to upTo (from where the last call stopped) to r.
func (l *loadSender) sendUpTo(r *router, upTo int64) {
	var wg sync.WaitGroup
	for range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := l.next.Add(1) - 1
				if i >= upTo {
					return
				}
				req := l.event(i)
				if code, _, _, err := r.trySend(l.path, req); err == nil && code == http.StatusAccepted {
					l.ids.Store(req.Headers["Ce-Id"], true)
				}
			}
		}()
	}
	wg.Wait()
}

// killAt kills r with SIGKILL (no drain, no final commit) once at events have been handed to the
// senders; the channel is closed when it has.
func (l *loadSender) killAt(r *router, at int64) <-chan struct{} {
	killed := make(chan struct{})
	go func() {
		for l.taken() < at {
			time.Sleep(time.Millisecond)
		}
		_ = r.cmd.Process.Kill()
		close(killed)
	}()
	return killed
}

// taken is how many events have been handed to the senders so far.
func (l *loadSender) taken() int64 { return l.next.Load() }

func (l *loadSender) accepted() int {
	n := 0
	l.ids.Range(func(any, any) bool { n++; return true })
	return n
}

// waitDelivered waits until delivered(id) holds for every accepted event, and fails the test
// after timeout with how many never arrived.
func (l *loadSender) waitDelivered(t *testing.T, timeout time.Duration, delivered func(id string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		l.ids.Range(func(k, _ any) bool {
			if !delivered(k.(string)) {
				missing++
			}
			return true
		})
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted events never reached the subscriber", missing, l.accepted())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
