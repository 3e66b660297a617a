package broker

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/memstore"
)

// TestOrderedPerKey: an ordered trigger keeps each partition key's order, and a key whose first
// event fails its first attempts holds back only its own later events: the other keys' events all
// arrive meanwhile. Keyless events keep their order among themselves.
func TestOrderedPerKey(t *testing.T) {
	var mu sync.Mutex
	delivered := map[string][]int{} // key -> sequence numbers delivered (2xx), in order
	var order []string              // every 2xx, as "key/seq"
	failures := 0
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, seq := r.Header.Get("Ce-Partitionkey"), 0
		fmt.Sscan(r.Header.Get("Ce-Seq"), &seq)
		mu.Lock()
		defer mu.Unlock()
		if key == "stuck" && seq == 0 && failures < 4 {
			failures++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		delivered[key] = append(delivered[key], seq)
		order = append(order, fmt.Sprintf("%s/%d", key, seq))
	}))
	defer sub.Close()
	cfg := retryConfig(t, fmt.Sprintf("    %s: ordered\n", config.AnnotationDeliveryOrder), sub.URL, "{retry: 5, backoffPolicy: linear, backoffDelay: PT0.2S}")
	results := memstore.New(1000)
	r := newRouter(results)
	r.Apply(cfg)
	ctx := context.Background()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	keys := []string{"stuck", "a", "b", "c", ""}
	const perKey = 10
	for seq := range perKey {
		for _, k := range keys {
			ext := map[string]any{"seq": seq}
			if k != "" {
				ext["partitionkey"] = k
			}
			if err := r.Publish(ctx, ref, []*router.Envelope{ev(fmt.Sprintf("%s-%d", k, seq), "any", ext)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	shutdownCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if aborted := r.Shutdown(shutdownCtx); aborted != 0 {
		t.Fatalf("%d events aborted", aborted)
	}
	for _, k := range keys {
		if got := fmt.Sprint(delivered[k]); got != "[0 1 2 3 4 5 6 7 8 9]" {
			t.Errorf("key %q delivered %s, want 0 to 9 in order", k, got)
		}
	}
	// Every other key was through before the stuck key's first event got in (it waited 4
	// backoffs of 0.2 s and more).
	first := -1
	for i, d := range order {
		if d == "stuck/0" {
			first = i
		}
	}
	if first != len(order)-perKey {
		t.Errorf("the stuck key's first event arrived at %d of %d: other keys waited for it: %v", first, len(order), order)
	}
}
