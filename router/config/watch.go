package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"time"
)

// Fingerprint identifies the content of the configuration at path: the names and bytes of its
// files. Comparing fingerprints catches every way a file can change, including the symlink swap of
// a Kubernetes ConfigMap volume, which inotify-style watches on the file itself miss.
func Fingerprint(path string) (string, error) {
	files, err := Files(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return "", err
		}
		_, _ = io.WriteString(h, f+"\x00")
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WatchChanges polls the files at path every interval and calls onChange whenever their content
// differs from the fingerprint last; onError gets a path that cannot be read. The caller loads the
// configuration (files, flags, cluster resources) and keeps serving the old one when it is invalid.
func WatchChanges(ctx context.Context, path, last string, interval time.Duration, onChange func(), onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, err := Fingerprint(path)
		if err != nil {
			if fp != last {
				onError(err)
				last = ""
			}
			continue
		}
		if fp == last {
			continue
		}
		last = fp
		onChange()
	}
}
