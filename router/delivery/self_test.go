package delivery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestSelfDeliveriesCarryTheRouterToken: a delivery to the router's own ingress carries its
// token (sender authentication lets the router's own events into its sinks and brokers); a
// delivery anywhere else, another port of the same host included, never does.
func TestSelfDeliveriesCarryTheRouterToken(t *testing.T) {
	var self, other []string
	selfSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		self = append(self, r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer selfSrv.Close()
	otherSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other = append(other, r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer otherSrv.Close()
	d := New(Options{SelfOrigins: []string{selfSrv.URL}, SelfAuthorization: "Bearer router-itself"})
	for _, u := range []string{selfSrv.URL + "/sinks/kafka/shop/archive", otherSrv.URL + "/", strings.Replace(selfSrv.URL, "http:", "https:", 1) + "/x"} {
		d.Deliver(context.Background(), &Request{URL: u, Event: testEvent()}, &Policy{})
	}
	if len(self) != 1 || self[0] != "Bearer router-itself" {
		t.Errorf("the router's own ingress got Authorization %q", self)
	}
	if len(other) != 1 || other[0] != "" {
		t.Errorf("another destination got Authorization %q", other)
	}
}
