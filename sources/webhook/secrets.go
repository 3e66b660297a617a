package webhook

import (
	"bytes"
	"os"
	"sync"
	"time"

	"github.com/switchyard-events/switchyard/router/config"
)

// secret is one configured secret. File-backed secrets (Kubernetes Secret volumes included) are
// re-read when their file changes, checked at most once a second, so a rotated secret takes
// effect without a restart. Values never leave this package except into HMAC and comparisons.
type secret struct {
	path string // "" for env secrets
	env  string

	mu      sync.Mutex
	value   []byte
	mod     time.Time
	checked time.Time
}

func newSecret(ref config.SecretRef, secretsDir string) *secret {
	if ref.Env != "" {
		return &secret{env: ref.Env}
	}
	return &secret{path: ref.Path(secretsDir)}
}

// get returns the current value, or nil when it is unavailable.
func (s *secret) get(now time.Time) []byte {
	if s.path == "" {
		if v := os.Getenv(s.env); v != "" {
			return []byte(v)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.checked) < time.Second && s.value != nil {
		return s.value
	}
	s.checked = now
	st, err := os.Stat(s.path) // follows the ..data symlink of a Secret volume
	if err != nil {
		s.value = nil
		return nil
	}
	if s.value != nil && st.ModTime().Equal(s.mod) {
		return s.value
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		s.value = nil
		return nil
	}
	s.value, s.mod = bytes.TrimRight(b, "\r\n"), st.ModTime()
	return s.value
}

// values returns every available secret value long enough to be used.
func values(secrets []*secret, now time.Time) [][]byte {
	out := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		if v := s.get(now); len(v) >= config.MinWebhookSecretBytes {
			out = append(out, v)
		}
	}
	return out
}
