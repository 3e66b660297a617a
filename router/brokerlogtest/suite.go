// Package brokerlogtest is the contract every router.BrokerLog keeps, as one suite that each
// implementation's tests run (memqueue's, and the Kafka log's against a real Kafka). A new log gets
// the whole contract by calling Run from its own tests.
//
// The contract, beyond the interface's doc comments: every appended envelope is handed to the
// Handler once (in one process without crashes), with its event (id, attributes, extensions,
// data), forwarded headers, hop count (TTL) and reply budget as appended, and envelopes of one
// partition key (the partitionkey extension) arrive in the order appended; Run returns once the log is closed and what it read was
// handed over; Append after Close is router.ErrUnavailable; a closed log leaves no goroutine.
package brokerlogtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/goleak"

	"github.com/switchyard-events/switchyard/router"
)

// Open returns a new, empty log of its own (its own topic, for a durable one).
type Open func(t *testing.T) router.BrokerLog

// Run runs the contract against logs made by open. ignore lists goroutines a client library
// keeps for the life of the process (not the log's), for the leak check.
func Run(t *testing.T, open Open, ignore ...goleak.Option) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, open, ignore) })
	t.Run("AppendAfterClose", func(t *testing.T) {
		log := open(t)
		log.Close()
		if err := log.Append(context.Background(), []*router.Envelope{envelope("late", 0)}); !errors.Is(err, router.ErrUnavailable) {
			t.Errorf("Append after Close: %v, want ErrUnavailable", err)
		}
	})
}

func envelope(id string, i int) *router.Envelope {
	e := event.New()
	e.SetID(id)
	e.SetSource("/contract")
	e.SetType("com.example.contract")
	e.SetSubject(fmt.Sprint("subject-", i))
	e.SetExtension("region", "eu-west")
	_ = e.SetData("application/json", map[string]int{"n": i})
	return &router.Envelope{Event: &e, Headers: http.Header{"X-Request-Id": {"rid-" + id}}, TTL: 200 - int32(i), ReplyBudget: 900 + int32(i)}
}

// collector is a Handler that keeps what it is handed and calls done at once.
type collector struct {
	mu   sync.Mutex
	got  []*router.Envelope
	more chan struct{}
}

func (c *collector) Handle(_ context.Context, env *router.Envelope, done func()) {
	c.mu.Lock()
	c.got = append(c.got, env)
	c.mu.Unlock()
	done()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *collector) envelopes() []*router.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*router.Envelope(nil), c.got...)
}

func roundTrip(t *testing.T, open Open, ignore []goleak.Option) {
	before := goleak.IgnoreCurrent()
	log := open(t)
	ctx := context.Background()
	var sent []*router.Envelope
	redrive := &router.Redrive{Trigger: router.TriggerRef{Namespace: "ns", Name: "t"},
		Received: time.UnixMilli(1_800_000_000_123).UTC(), Finished: time.UnixMilli(1_800_000_001_456).UTC()}
	for i := 0; i < 3; i++ { // one at a time, then a batch of three
		env := envelope(fmt.Sprint("single-", i), i)
		if i == 1 {
			env.Redrive = redrive // a redrive travels beside its event
		}
		if err := log.Append(ctx, []*router.Envelope{env}); err != nil {
			t.Fatalf("Append: %v", err)
		}
		sent = append(sent, env)
	}
	batch := []*router.Envelope{envelope("batch-0", 3), envelope("batch-1", 4), envelope("batch-2", 5)}
	for _, env := range batch {
		env.Event.SetExtension("partitionkey", "batch")
	}
	if err := log.Append(ctx, batch); err != nil {
		t.Fatalf("Append of a batch: %v", err)
	}
	sent = append(sent, batch...)

	c := &collector{more: make(chan struct{}, 1)}
	ran := make(chan struct{})
	go func() { log.Run(ctx, c); close(ran) }()
	deadline := time.After(30 * time.Second)
	for len(c.envelopes()) < len(sent) {
		select {
		case <-c.more:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("handed %d of %d envelopes", len(c.envelopes()), len(sent))
		}
	}
	got := c.envelopes()
	byID := map[string]*router.Envelope{}
	order := map[string]int{}
	for i, env := range got {
		if byID[env.Event.ID()] != nil {
			t.Errorf("envelope %s handed twice", env.Event.ID())
		}
		byID[env.Event.ID()] = env
		order[env.Event.ID()] = i
	}
	for i, want := range sent {
		env := byID[want.Event.ID()]
		if env == nil {
			t.Errorf("envelope %s never handed", want.Event.ID())
			continue
		}
		e := env.Event
		if e.Source() != "/contract" || e.Type() != "com.example.contract" || e.Subject() != fmt.Sprint("subject-", i) ||
			e.Extensions()["region"] != "eu-west" || string(e.Data()) != fmt.Sprintf(`{"n":%d}`, i) || e.DataContentType() != "application/json" {
			t.Errorf("event %s came back changed: %v", e.ID(), e)
		}
		if env.TTL != want.TTL || env.ReplyBudget != want.ReplyBudget {
			t.Errorf("%s: TTL %d reply budget %d, want %d %d", e.ID(), env.TTL, env.ReplyBudget, want.TTL, want.ReplyBudget)
		}
		switch r := env.Redrive; {
		case want.Redrive == nil && r != nil:
			t.Errorf("%s came back as a redrive: %+v", e.ID(), r)
		case want.Redrive != nil && (r == nil || r.Trigger != want.Redrive.Trigger || !r.Received.Equal(want.Redrive.Received) || !r.Finished.Equal(want.Redrive.Finished)):
			t.Errorf("%s: redrive %+v, want %+v", e.ID(), r, want.Redrive)
		}
		if len(e.Extensions()) > 0 && want.Redrive != nil {
			for name := range e.Extensions() {
				if name != "region" && name != "partitionkey" && name != "knativekafkapartition" && name != "knativekafkaoffset" && name != "knativearrivaltime" {
					t.Errorf("%s: extension %q came back; a redrive's address must not reach subscribers", e.ID(), name)
				}
			}
		}
		if env.Headers.Get("X-Request-Id") != "rid-"+e.ID() {
			t.Errorf("%s: forwarded headers %v", e.ID(), env.Headers)
		}
	}
	if !(order["batch-0"] < order["batch-1"] && order["batch-1"] < order["batch-2"]) {
		t.Errorf("envelopes of one partition key came back out of order: %v", order)
	}
	log.Close()
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	goleak.VerifyNone(t, append(ignore, before)...)
}
