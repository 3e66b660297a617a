package cehttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// batchElements agrees with encoding/json on every array it accepts: the same elements, in
// order; what encoding/json refuses, batchElements or the element's own decoding refuses.
func FuzzBatchElements(f *testing.F) {
	for _, s := range []string{
		`[]`, ` [ ] `, `[{}]`, `[{"a":"]"},{"b":"\"}"}]`, `[ {"a":[1,{"b":[]}]} , {"c":"\\"} ]`,
		`[1,2,"x"]`, `[,]`, `[{},]`, `[{}`, `{}`, `[{}]x`, `[{}}]`, `[{"a":"\u005d"}]`, "[\n{}\n,\t{}\r\n]",
		`[[],[[]]]`, `["`, `[{"a":"b\\"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var want []json.RawMessage
		jerr := json.Unmarshal(body, &want)
		var got [][]byte
		n, err := batchElements(body, func(_ int, elem []byte) error {
			if !json.Valid(elem) {
				return errors.New("element not valid JSON")
			}
			got = append(got, elem)
			return nil
		})
		if jerr != nil {
			if err == nil && want == nil && !bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
				t.Fatalf("%q: encoding/json refuses it (%v), batchElements found %d valid elements", body, jerr, n)
			}
			return
		}
		if want == nil { // JSON null: not an array
			if err == nil {
				t.Fatalf("%q: null taken as an array", body)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: encoding/json reads %d elements, batchElements fails: %v", body, len(want), err)
		}
		if n != len(want) || len(got) != len(want) {
			t.Fatalf("%q: %d elements, encoding/json %d", body, n, len(want))
		}
		for i := range want {
			if !bytes.Equal(bytes.TrimSpace(want[i]), got[i]) {
				t.Fatalf("%q element %d: %q, encoding/json %q", body, i, got[i], want[i])
			}
		}
	})
}

// A batch is counted before any of its events is built (issue #36, case 5): admit refuses it
// with its own error, and building nothing shows as a few kilobytes allocated for a 4 MiB batch
// of 68,000 events, not the 100 MB its events take.
func TestBatchIsCountedBeforeItIsBuilt(t *testing.T) {
	var b strings.Builder
	b.WriteString("[")
	const events = 68000
	for i := range events {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"%d","source":"/s","type":"t"}`, i)
	}
	b.WriteString("]")
	body := []byte(b.String())
	h := http.Header{"Content-Type": {MediaBatch}}
	tooMany := errors.New("too many")
	var counted int
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	_, err := DecodeBounded(h, body, func(n int) error { counted = n; return tooMany })
	runtime.ReadMemStats(&ms)
	allocated := ms.TotalAlloc - before
	if err != tooMany || counted != events {
		t.Fatalf("admit saw %d events and Decode returned %v, want %d and admit's error", counted, err, events)
	}
	if allocated > 64<<10 {
		t.Errorf("refusing a batch of %d events allocated %d bytes: its events were built first", events, allocated)
	}
	evs, err := DecodeBounded(h, body, func(n int) error { return nil })
	if err != nil || len(evs) != events || evs[events-1].ID() != fmt.Sprint(events-1) {
		t.Fatalf("admitted: %d events, %v", len(evs), err)
	}
}
