package main

import (
	"testing"

	"github.com/switchyard-events/switchyard/router/config"
)

// The soft memory limit outside a container is the byte bounds' sum plus the runtime's room:
// 896 MiB with the defaults, as docs/security.md says, and it follows the configured bounds.
func TestBoundsSoftLimit(t *testing.T) {
	if got := boundsSoftLimit(nil); got != 896<<20 {
		t.Errorf("default soft limit %d MiB, want 896", got>>20)
	}
	s := config.Settings{MaxUnfinishedBytes: 1 << 30, MaxBodyBytesInFlight: 64 << 20, MaxReplyBytesInFlight: 64 << 20,
		MaxResultEventBytes: 64 << 20, MaxResultOutcomeBytes: 128 << 20}
	if got := boundsSoftLimit(&s); got != (1024+128+64+64+128+256)<<20 {
		t.Errorf("soft limit %d MiB for a 1 GiB unfinished bound, want 1664", got>>20)
	}
}
