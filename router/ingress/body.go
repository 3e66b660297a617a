package ingress

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/switchyard-events/switchyard/router"
)

// BodyBudget bounds the bytes of request bodies being read at once, across every handler that
// shares it (broker ingress and webhook sources). Bytes are counted as they arrive, not as a
// Content-Length announces them: a thousand connections that announce 4 MiB and send one byte hold
// a few kilobytes each, not 4 GiB. A request whose body does not fit in what is left is answered
// 503 with Retry-After at once. Once the handler is done, the event's bytes are counted by the
// broker's bound on unfinished events instead.
type BodyBudget struct{ router.ByteBudget }

// DefaultBodyBudget is the default bound of the bytes of bodies being read at once.
const DefaultBodyBudget = 64 << 20

// NewBodyBudget returns a budget of max bytes (DefaultBodyBudget when max <= 0).
func NewBodyBudget(max int64) *BodyBudget {
	b := &BodyBudget{}
	b.SetMax(max)
	return b
}

// SetMax changes the bound (DefaultBodyBudget when max <= 0); bodies being read keep what they hold.
func (b *BodyBudget) SetMax(max int64) {
	if max <= 0 {
		max = DefaultBodyBudget
	}
	b.ByteBudget.SetMax(max)
}

// Body is a request body read under a BodyBudget; Release gives its bytes back.
type Body struct {
	Data   []byte
	budget *BodyBudget
	held   int64
}

// Release returns the body's bytes to the budget. It is idempotent.
func (b *Body) Release() {
	if b.budget != nil && b.held > 0 {
		b.budget.Release(b.held)
		b.held = 0
	}
}

// take holds n more bytes for what the body is turned into (a batch's events), given back by
// Release with the body's own; false when the budget cannot hold them.
func (b *Body) take(n int64) bool {
	if b.budget == nil || !b.budget.Take(n) {
		return false
	}
	b.held += n
	return true
}

// BodyError is why a body could not be read, with the status to answer.
type BodyError struct {
	Status int
	Msg    string
}

func (e *BodyError) Error() string { return e.Msg }

// firstChunk is what a body of unknown or large length gets before its bytes arrive; bodies of
// a known length up to it get a buffer of exactly their length (it becomes the event's data and is
// held while the event is queued, so it should not round up).
const firstChunk = 16 << 10

// Read reads r's body, at most limit bytes, into a buffer grown as bytes arrive. Errors: 413
// for a body over limit, 503 when the budget is spent, 408 when the server's read timeout ended
// the read, 400 for any other read error.
func (b *BodyBudget) Read(r *http.Request, limit int64) (Body, *BodyError) {
	tooLarge := func() *BodyError {
		return &BodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than the %d-byte limit", limit)}
	}
	if r.ContentLength > limit {
		return Body{}, tooLarge()
	}
	known := r.ContentLength >= 0
	want := limit + 1 // unknown length: read one byte past the limit to see it exceeded
	if known {
		want = r.ContentLength
	}
	body := Body{budget: b}
	grow := func(to int64) *BodyError {
		if !b.Take(to - int64(cap(body.Data))) {
			body.Release()
			return &BodyError{http.StatusServiceUnavailable, "too many request bodies are being received at once (spec.ingress.maxBodyBytesInFlight): retry later"}
		}
		body.held += to - int64(cap(body.Data))
		next := make([]byte, len(body.Data), to)
		copy(next, body.Data)
		body.Data = next
		return nil
	}
	if err := grow(min(want, firstChunk)); err != nil {
		return Body{}, err
	}
	src := r.Body
	if !known {
		src = io.NopCloser(io.LimitReader(r.Body, want))
	}
	for int64(len(body.Data)) < want {
		if len(body.Data) == cap(body.Data) {
			// Grow by four: few copies on the way to a large body, and a known length is never
			// exceeded (the server reads no further than it).
			if err := grow(min(want, 4*int64(cap(body.Data)))); err != nil {
				return Body{}, err
			}
		}
		n, err := src.Read(body.Data[len(body.Data):cap(body.Data)])
		body.Data = body.Data[:len(body.Data)+n]
		if err == io.EOF {
			if known && int64(len(body.Data)) < want {
				body.Release()
				return Body{}, &BodyError{http.StatusBadRequest, fmt.Sprintf("reading body: it ended after %d of the %d bytes announced", len(body.Data), want)}
			}
			break
		}
		if err != nil {
			body.Release()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Body{}, &BodyError{http.StatusRequestTimeout, "reading body: not received within the read timeout (spec.ingress.readTimeout)"}
			}
			return Body{}, &BodyError{http.StatusBadRequest, "reading body: " + err.Error()}
		}
	}
	if !known && int64(len(body.Data)) > limit {
		body.Release()
		return Body{}, tooLarge()
	}
	return body, nil
}
