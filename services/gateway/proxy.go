package gateway

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/sessionguard/revoke/internal/httpx"
)

// bufferPool reuses the proxy's copy buffers instead of allocating 32 KiB
// per request.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// NewTransport is the proxy's transport to the upstream: keep-alive
// connections, bounded dial and TLS handshake, no response-header timeout
// (long polls and streams are the upstream's business).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// Proxy returns the reverse proxy to upstream, behind the gateway's
// middleware: only accepted requests reach the upstream, with exactly the
// four X-Auth-* headers the gateway sets. Streaming responses and WebSocket
// upgrades pass through.
//
// The identity headers are set on the outgoing request in Rewrite, which
// runs after the proxy has removed the hop-by-hop headers: a client that
// names X-Auth-User in its Connection header must not make the upstream
// receive a request without it. Anything the client sent that reads as an
// identity header (X_Auth_Role, say), as a header or a trailer, is removed.
func (g *Gateway) Proxy(upstream *url.URL, transport http.RoundTripper, log *slog.Logger) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
			stripIdentity(pr.Out.Header)
			stripIdentity(pr.Out.Trailer)
			if id, ok := IdentityFrom(pr.In.Context()); ok {
				setIdentity(pr.Out.Header, id)
			}
		},
		Transport:  transport,
		BufferPool: &bufferPool{},
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.WarnContext(r.Context(), "upstream failed", "error", err.Error(), "path", r.URL.Path)
			httpx.WriteProblem(w, http.StatusBadGateway, "bad-gateway", "the upstream did not answer")
		},
	}
	return g.Middleware(rp)
}
