package router

import (
	"context"
	"time"
)

// DedupState is what a Deduplicator knows of a delivery.
type DedupState uint8

const (
	// DedupFresh: the delivery is claimed now; route it, then Settle the claim.
	DedupFresh DedupState = iota
	// DedupInFlight: another claim of it is being routed right now.
	DedupInFlight
	// DedupAccepted: it was routed already, within the window.
	DedupAccepted
)

// Deduplicator remembers the deliveries webhook sources were given. Backed by a database (the
// Cassandra result store's), it is shared by every replica and outlives restarts: a provider's
// redelivery is routed once whichever replica it reaches. Keys name the source and the delivery.
type Deduplicator interface {
	// Reserve claims key for window, or says what is known of it.
	Reserve(ctx context.Context, key string, window time.Duration) (DedupState, error)
	// Settle ends a claim of key: remembered as accepted for window, or released so that the
	// provider's retry is routed.
	Settle(ctx context.Context, key string, accepted bool, window time.Duration) error
}
