package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/switchyard-events/switchyard/router/cehttp"
)

// runFunction is a tiny subscriber for demos and manual tests: it prints each CloudEvent it
// receives as one JSON line and answers 200, optionally with a reply event.
func runFunction(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("function", stdout, stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	replyType := fs.String("reply-type", "", "when set, answer each event with a reply event of this type (not to events of this type)")
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		events, err := cehttp.Decode(r.Header, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range events {
			line, _ := json.Marshal(e)
			fmt.Fprintf(stdout, "%s\n", line)
		}
		if *replyType == "" || events[0].Type() == *replyType {
			w.WriteHeader(http.StatusOK)
			return
		}
		reply := events[0].Clone()
		reply.SetID(uuid.NewString())
		reply.SetType(*replyType)
		reply.SetSource("switchyard/demo-function")
		data := cehttp.WriteBinary(w.Header(), &reply)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	fmt.Fprintf(stderr, "demo function listening on %s\n", *addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(stderr, "function:", err)
		return 1
	}
	return 0
}
