package cehttp

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/router"
)

// EnvelopeSize, what every memory bound counts per event, is at least what a decoded event holds
// on the heap, whichever attribute a producer fills (issue #36, case 1: 3 MiB in dataschema,
// datacontenttype or the source's fragment or userinfo counted nothing; 200,000 empty extensions
// counted 16 bytes each and held four times that).
func TestEnvelopeSizeIsAtLeastTheHeap(t *testing.T) {
	big := strings.Repeat("a", 3<<20)
	structured := func(extra string) (http.Header, []byte) {
		return http.Header{"Content-Type": {MediaStructured}},
			[]byte(`{"specversion":"1.0","id":"x","source":"/s","type":"t"` + extra + `}`)
	}
	var manyExt strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&manyExt, `,"a%d":""`, i)
	}
	for _, tc := range []struct {
		name string
		msg  func() (http.Header, []byte)
	}{
		{"dataschema", func() (http.Header, []byte) { return structured(`,"dataschema":"https://x/` + big + `"`) }},
		{"datacontenttype", func() (http.Header, []byte) { return structured(`,"datacontenttype":"text/` + big + `"`) }},
		{"source fragment", func() (http.Header, []byte) {
			return http.Header{"Content-Type": {MediaStructured}}, []byte(`{"specversion":"1.0","id":"x","source":"/s#` + big + `","type":"t"}`)
		}},
		{"source userinfo", func() (http.Header, []byte) {
			return http.Header{"Content-Type": {MediaStructured}}, []byte(`{"specversion":"1.0","id":"x","source":"https://` + big + `@h/","type":"t"}`)
		}},
		{"subject", func() (http.Header, []byte) { return structured(`,"subject":"` + big + `"`) }},
		{"string extension", func() (http.Header, []byte) { return structured(`,"ext":"` + big + `"`) }},
		{"200,000 empty extensions", func() (http.Header, []byte) { return structured(manyExt.String()) }},
		{"binary dataschema", func() (http.Header, []byte) {
			return http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"x"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}, "Ce-Dataschema": {"https://x/" + big}}, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, body := tc.msg()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.HeapAlloc
			events, err := Decode(h, body)
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC() // the message stays alive: what is held beyond it is the decoding's
			runtime.ReadMemStats(&ms)
			held := int64(ms.HeapAlloc) - int64(before)
			size := router.EnvelopeSize(&router.Envelope{Event: events[0]})
			t.Logf("held %d bytes on the heap, counted %d", held, size)
			if size+64<<10 < held { // 64 KiB of slack: the heap's figure moves with other allocations
				t.Errorf("EnvelopeSize counts %d bytes for an event that holds %d on the heap", size, held)
			}
			runtime.KeepAlive(events)
			runtime.KeepAlive(body)
			runtime.KeepAlive(h)
		})
	}
}
