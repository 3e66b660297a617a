package memqueue

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/brokerlogtest"
)

type collect struct {
	mu  sync.Mutex
	got []*router.Envelope
}

func (c *collect) Handle(_ context.Context, env *router.Envelope, done func()) {
	c.mu.Lock()
	c.got = append(c.got, env)
	c.mu.Unlock()
	done()
}

func envs(n int) []*router.Envelope {
	out := make([]*router.Envelope, n)
	for i := range out {
		out[i] = &router.Envelope{Offset: int64(i)}
	}
	return out
}

func TestAllOrNothingAndOrder(t *testing.T) {
	q := New(3)
	ctx := context.Background()
	if err := q.Append(ctx, envs(2)); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(ctx, envs(2)); !errors.Is(err, router.ErrQueueFull) {
		t.Fatalf("a batch that does not fit: %v, want ErrQueueFull", err)
	}
	if q.Len() != 2 {
		t.Fatalf("a rejected batch left %d queued", q.Len()-2)
	}
	if err := q.Append(ctx, envs(1)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := q.Append(ctx, envs(1)); !errors.Is(err, router.ErrUnavailable) {
		t.Fatalf("append after close: %v", err)
	}
	c := &collect{}
	q.Run(ctx, c) // returns once drained
	if len(c.got) != 3 || c.got[0].Offset != 0 || c.got[1].Offset != 1 || c.got[2].Offset != 0 {
		t.Fatalf("drained %d in the wrong order", len(c.got))
	}
	q.Close() // idempotent
}

// TestContract runs the BrokerLog contract every log keeps.
func TestContract(t *testing.T) {
	brokerlogtest.Run(t, func(*testing.T) router.BrokerLog { return New(100) })
}
