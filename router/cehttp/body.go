package cehttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ReadBody reads a request body of at most limit bytes. When it cannot, it answers the request
// itself, 413 naming the limit (spec.ingress.maxBodyBytes) or 400 for a body that broke off, and
// reports false.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		return body, true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		http.Error(w, fmt.Sprintf("the request is larger than %d bytes (spec.ingress.maxBodyBytes)", tooLarge.Limit), http.StatusRequestEntityTooLarge)
	} else {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
	}
	return nil, false
}
