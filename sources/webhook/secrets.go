package webhook

import (
	"time"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/secret"
)

// values returns every configured secret that is readable now and long enough to be used. Secrets
// are watched (package secret), so a rotated one takes effect without a restart.
func values(secrets []*secret.Watched, now time.Time) [][]byte {
	out := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		if v := s.Value(now); len(v) >= config.MinWebhookSecretBytes {
			out = append(out, v)
		}
	}
	return out
}
