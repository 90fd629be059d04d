package httpx

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// DebugRoute is one more handler on the debug listener.
type DebugRoute struct {
	Pattern string
	Handler http.Handler
}

// ServeDebug serves Go's profiler (net/http/pprof), and routes, on addr,
// apart from the service's own listeners: operators reach it from the host
// (or a port-forward), clients never. name says whose it is, in the log and
// in errors.
func ServeDebug(name, addr string, log *slog.Logger, routes ...DebugRoute) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: DEBUG_ADDR: listen on %s: %w", name, addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for _, r := range routes {
		mux.Handle(r.Pattern, r.Handler)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info(name+" profiler listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
