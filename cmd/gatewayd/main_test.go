package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHealthcheck: `gatewayd healthcheck` (a container's HEALTHCHECK) asks
// /readyz on GATEWAY_CONTROL_ADDR and passes only on a 200.
func TestHealthcheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ready atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	env := func(k string) string { return map[string]string{"GATEWAY_CONTROL_ADDR": ":" + port}[k] }
	check := func() error {
		return run(t.Context(), []string{"gatewayd", "healthcheck"}, env, io.Discard, io.Discard)
	}
	if err := check(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a gateway not ready passes: %v", err)
	}
	ready.Store(true)
	if err := check(); err != nil {
		t.Fatalf("a ready gateway fails: %v", err)
	}
	if err := run(t.Context(), []string{"gatewayd", "extra"}, env, io.Discard, io.Discard); err == nil {
		t.Fatal("an unknown argument is accepted")
	}
}
