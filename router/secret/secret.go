// Package secret reads secrets by reference: a file, an environment variable, or a key of a
// Kubernetes Secret mounted under the secrets directory ({dir}/{name}/{key}). The configuration
// holds references, never values; values go into comparisons and signatures and nowhere else, and
// errors name the file or variable, never the content.
//
// Read takes a secret once (at load, at each connection); Watched keeps one current, read again
// when its file changes, for secrets checked on every request (webhook signatures, bearer tokens),
// so that a rotated or revoked secret applies without a reload.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Ref is where a secret lives; exactly one of File, Env, or Name (with Key) is set.
type Ref struct {
	Name, Key string
	File      string
	Env       string
}

// IsZero tells an unset ref.
func (r Ref) IsZero() bool { return r == Ref{} }

// Path is the file of a file or Secret-key secret: a Kubernetes Secret mounted under secretsDir
// keeps each key at {secretsDir}/{name}/{key}. "" for an environment variable.
func (r Ref) Path(secretsDir string) string {
	switch {
	case r.File != "":
		return r.File
	case r.Name != "":
		return filepath.Join(secretsDir, r.Name, r.Key)
	}
	return ""
}

// Read returns the secret's current value, trailing newlines trimmed. An unset variable, an
// unreadable or empty file are errors naming it.
func (r Ref) Read(secretsDir string) ([]byte, error) {
	if r.Env != "" {
		b := []byte(os.Getenv(r.Env))
		if len(b) == 0 {
			return nil, fmt.Errorf("environment variable %s is not set", r.Env)
		}
		return b, nil
	}
	path := r.Path(secretsDir)
	if path == "" {
		return nil, errors.New("no file, variable or Secret named")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// Watched is a secret kept current: a file (or a mounted Secret key, through the ..data symlink
// swap of a Secret volume) is read again when its modification time or size changes, looked at
// most once a second; a variable is read each time. A secret that cannot be read any more is nil:
// it fails closed.
type Watched struct {
	ref        Ref
	secretsDir string

	mu      sync.Mutex
	checked time.Time
	modTime time.Time
	size    int64
	value   []byte
}

// Watch returns the watched secret of r.
func Watch(r Ref, secretsDir string) *Watched { return &Watched{ref: r, secretsDir: secretsDir} }

// Value is the secret as it is now, nil when unavailable.
func (w *Watched) Value(now time.Time) []byte {
	if w.ref.Env != "" {
		if v := os.Getenv(w.ref.Env); v != "" {
			return []byte(v)
		}
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.value != nil && now.Sub(w.checked) < time.Second {
		return w.value
	}
	w.checked = now
	path := w.ref.Path(w.secretsDir)
	fi, err := os.Stat(path) // follows the ..data symlink of a Secret volume
	if err != nil {
		w.value = nil
		return nil
	}
	if w.value != nil && fi.ModTime().Equal(w.modTime) && fi.Size() == w.size {
		return w.value
	}
	v, err := w.ref.Read(w.secretsDir)
	if err != nil {
		w.value = nil
		return nil
	}
	w.value, w.modTime, w.size = v, fi.ModTime(), fi.Size()
	return w.value
}

// FileOrEnv is a secret written in a settings block as {file: PATH} or {env: VARIABLE}.
type FileOrEnv struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// Ref is f as a reference.
func (f FileOrEnv) Ref() Ref { return Ref{File: f.File, Env: f.Env} }

// Check reports what is wrong with f ("" when it can be read now), and the field at fault:
// "", "file" or "env".
func (f FileOrEnv) Check() (field, problem string) {
	switch {
	case f.File != "" && f.Env != "":
		return "", "set file or env, not both"
	case f.File == "" && f.Env == "":
		return "", "set file or env"
	}
	if _, err := f.Ref().Read(""); err != nil {
		if f.Env != "" {
			return "env", err.Error()
		}
		return "file", err.Error()
	}
	return "", ""
}

// Spec is a secret reference as a settings block writes it: {secretKeyRef: {name, key}} (a
// Kubernetes Secret mounted under the secrets directory), {file: PATH} or {env: VARIABLE}.
type Spec struct {
	SecretKeyRef *KeySelector `yaml:"secretKeyRef"`
	File         string       `yaml:"file"`
	Env          string       `yaml:"env"`
}

// KeySelector names a key of a Kubernetes Secret.
type KeySelector struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// Check reports what is wrong with s as written ("" when nothing), and the field at fault ("" or
// "secretKeyRef"); it reads nothing (a Secret is mounted where serve runs, not always where
// validate does).
func (s Spec) Check() (field, problem string) {
	set := 0
	if k := s.SecretKeyRef; k != nil {
		set++
		if k.Name == "" || k.Key == "" || strings.ContainsAny(k.Name+k.Key, "/\\") || k.Name == ".." || k.Key == ".." {
			return "secretKeyRef", "needs a name and a key (no slashes)"
		}
	}
	if s.File != "" {
		set++
	}
	if s.Env != "" {
		set++
	}
	if set != 1 {
		return "", "set exactly one of secretKeyRef, file, env"
	}
	return "", ""
}

// Ref is s as a reference.
func (s Spec) Ref() Ref {
	r := Ref{File: s.File, Env: s.Env}
	if k := s.SecretKeyRef; k != nil {
		r.Name, r.Key = k.Name, k.Key
	}
	return r
}
