package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "github", ""), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "github", "token"), []byte("s3cret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SY_SECRET_TEST", "from-env")
	for _, c := range []struct {
		ref       Ref
		want, err string
	}{
		{ref: Ref{Name: "github", Key: "token"}, want: "s3cret-value"},
		{ref: Ref{File: filepath.Join(dir, "github", "token")}, want: "s3cret-value"},
		{ref: Ref{Env: "SY_SECRET_TEST"}, want: "from-env"},
		{ref: Ref{Env: "SY_SECRET_UNSET"}, err: "environment variable SY_SECRET_UNSET is not set"},
		{ref: Ref{Name: "github", Key: "missing"}, err: "cannot read " + filepath.Join(dir, "github", "missing")},
		{ref: Ref{}, err: "no file, variable or Secret named"},
	} {
		v, err := c.ref.Read(dir)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%+v: %v, want an error containing %q and no secret", c.ref, err, c.err)
			}
			continue
		}
		if err != nil || string(v) != c.want {
			t.Errorf("%+v: %q %v, want %q", c.ref, v, err, c.want)
		}
	}
}

// TestWatchedFollowsTheFile: a rotated file is read again (at most once a second), a removed one
// fails closed.
func TestWatchedFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := Watch(Ref{File: path}, "")
	now := time.Now()
	if v := w.Value(now); string(v) != "first" {
		t.Fatalf("first read: %q", v)
	}
	if err := os.WriteFile(path, []byte("second-and-longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v := w.Value(now.Add(100 * time.Millisecond)); string(v) != "first" {
		t.Errorf("looked at the file again within a second: %q", v)
	}
	if v := w.Value(now.Add(2 * time.Second)); string(v) != "second-and-longer" {
		t.Errorf("after rotation: %q", v)
	}
	os.Remove(path)
	if v := w.Value(now.Add(4 * time.Second)); v != nil {
		t.Errorf("a removed file still gives %q", v)
	}
}
