package cassandra

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// TestArchiveBufferIsBounded: while Cassandra cannot be written (no session here), the archive
// holds at most archiveBufferBytes and counts what it drops; Keep never blocks.
func TestArchiveBufferIsBounded(t *testing.T) {
	s := &Store{cfg: Config{Keyspace: "k", Timeout: time.Second}, logger: zap.NewNop()}
	s.archive = newArchiver(s, nil)
	defer s.archive.close()
	rec := router.ArchiveRecord{ID: "e", Source: "/s", Received: time.Now(), JSON: []byte(strings.Repeat("x", 1<<20))}
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	start := time.Now()
	for i := 0; i < 100; i++ { // 100 MiB offered
		s.Keep(ref, time.Hour, []router.ArchiveRecord{rec})
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Keep took %v for 100 events: it must not wait for Cassandra", took)
	}
	time.Sleep(2 * archiveFlushEvery) // a flush fails and puts its rows back
	s.archive.mu.Lock()
	held, rows := s.archive.bytes, len(s.archive.rows)
	s.archive.mu.Unlock()
	if held > archiveBufferBytes || held != rows<<20 {
		t.Errorf("buffer holds %d bytes in %d rows, want at most %d, counted exactly", held, rows, archiveBufferBytes)
	}
	if dropped := testutil.ToFloat64(s.archive.dropped); dropped != float64(100-archiveBufferBytes>>20) {
		t.Errorf("dropped %v, want %d", dropped, 100-archiveBufferBytes>>20)
	}
}
