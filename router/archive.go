package router

import (
	"context"
	"errors"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// ExtReplay marks a replayed event: its value is the replay run's id (docs/archive.md).
const ExtReplay = "switchyardreplay"

// Archiver keeps the events an in-memory broker accepted, for replay (the Cassandra archive).
type Archiver interface {
	// Keep archives recs, accepted by broker ref, for retention. It must not block the ingress:
	// implementations buffer, and may drop (and count) what they cannot keep up with.
	Keep(ref BrokerRef, retention time.Duration, recs []ArchiveRecord)
}

// ArchiveRecord is one accepted event as the archive keeps it: encoded when it was accepted (the
// event itself then belongs to the delivery path).
type ArchiveRecord struct {
	ID, Source string
	Received   time.Time
	// JSON is the event in the CloudEvents JSON format.
	JSON []byte
}

// ArchiveReader reads a broker's archived events back by time.
type ArchiveReader interface {
	// ReadArchive calls fn with each event of q.Broker received in [q.From, q.To), after q.After
	// (a Checkpoint an earlier call handed out; "" from the start), in the order they were
	// accepted (per partition, for a Kafka log). It stops at fn's first error and returns it.
	ReadArchive(ctx context.Context, q ArchiveQuery, fn func(ArchivedEvent) error) error
}

// ArchiveQuery selects archived events.
type ArchiveQuery struct {
	Broker   BrokerRef
	From, To time.Time
	After    Checkpoint
}

// Checkpoint is a place in a broker's archive, opaque to all but the reader that made it.
type Checkpoint string

// ArchivedEvent is one event read back from an archive.
type ArchivedEvent struct {
	Event    *event.Event
	Received time.Time
	// At is the place just after this event: reading again from it continues with the next.
	At Checkpoint
}

// ErrNoArchive: the broker keeps no archive to read.
var ErrNoArchive = errors.New("the broker keeps no archive: add switchyard.dev/archive-retention to it (docs/archive.md)")
