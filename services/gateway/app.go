package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/buildinfo"
	"github.com/sessionguard/revoke/internal/telemetry"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/envconf"
	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/loop"
	"github.com/sessionguard/revoke/internal/natsx"
)

// Config is what an embedded gateway needs (Start).
type Config struct {
	JWKSURL      string
	MaxStaleness time.Duration
	Issuer       string
	Audience     string
	Leeway       time.Duration
	// CacheSize is how many verified tokens are cached.
	CacheSize int64
	// ActivityEvery is the least time between two activity reports of one
	// session; zero turns activity reports off.
	ActivityEvery time.Duration
	// Name and Version describe the gateway in its applied reports
	// (gateway.v1.applied); ReportEvery is their heartbeat (zero: 1 s), and
	// ReportInterval the shortest time between two reports of progress no
	// caller waits for (zero: after every apply; see Reporter).
	Name           string
	Version        string
	ReportEvery    time.Duration
	ReportInterval time.Duration
	// Now is the gateway's clock (nil: time.Now); tests skew it.
	Now func() time.Time
	// Tracer, when it records (gatewayd sets it from the OTEL_* variables),
	// makes each decision a span and each applied revocation a span in
	// the trace of the request that revoked it (nil: no spans at all).
	Tracer trace.TracerProvider
	// A gateway in a point of presence follows a mirror of REVOCATIONS in
	// its leaf node's JetStream domain: Domain names the domain (""
	// for the NATS the gateway connects to), Stream the mirror (""
	// for REVOCATIONS). Its staleness is measured against the hub the
	// mirror copies, not only against the mirror (see Feed).
	Domain string
	Stream string
	// SnapshotEvery is how often a current gateway writes a snapshot of
	// its blocklist (to the object store bucket REVOCATIONS_SNAPSHOTS in its
	// JetStream domain), when the stored one is older; a starting gateway
	// loads the snapshot and replays only the stream's tail after it
	// (GATEWAY_SNAPSHOT_INTERVAL, default 1m; 0 turns snapshots off).
	SnapshotEvery time.Duration
	// HubDomain, with Domain, is the hub's JetStream domain: the gateway
	// then makes the mirror itself if it is missing (idempotent: every
	// gateway of the PoP may), copying the hub's REVOCATIONS with its max
	// age.
	HubDomain string
}

// AppConfig is everything gatewayd reads from its environment.
type AppConfig struct {
	Config
	NATSURL     string
	Upstream    *url.URL
	Addr        string
	ControlAddr string
	// DebugAddr, when set (DEBUG_ADDR, e.g. 127.0.0.1:6061), serves Go's
	// profiler on a listener of its own, never on Addr or ControlAddr.
	DebugAddr string
	// Clock, when DEBUG_CLOCK_OFFSET is set (even to 0s), is the gateway's
	// wall clock, offset by it and stepped by PUT /debug/clock?offset= on
	// DebugAddr: a fault test's clock skew (the soak's nemesis).
	Clock *Clock
}

// ConfigFromEnv reads the configuration; every problem is reported at once.
func ConfigFromEnv(getenv func(string) string) (AppConfig, error) {
	r := envconf.New(getenv)
	c := AppConfig{
		Config: Config{
			JWKSURL:       r.URL("JWKS_URL", "http://sessiond:8080/.well-known/jwks.json"),
			MaxStaleness:  r.Duration("GATEWAY_MAX_STALENESS", 10*time.Second, time.Millisecond),
			Issuer:        r.String("ISSUER", "http://localhost:8080"),
			Audience:      r.String("AUDIENCE", "api"),
			Leeway:        r.Duration("TOKEN_LEEWAY", 30*time.Second, 0),
			CacheSize:     1 << 20,
			ActivityEvery: 30 * time.Second,
			Name:          r.String("GATEWAY_NAME", hostname()),
			// Progress nobody waits for is reported coalesced: a fleet of
			// 1,000 gateways then sends sessiond at most 10,000 reports a
			// second, whatever the rate of revocations.
			ReportInterval: r.Duration("GATEWAY_REPORT_INTERVAL", 100*time.Millisecond, 0),
			Domain:         r.String("GATEWAY_JS_DOMAIN", ""),
			Stream:         r.String("GATEWAY_STREAM", events.StreamRevocations),
			HubDomain:      r.String("GATEWAY_HUB_DOMAIN", ""),
			SnapshotEvery:  r.Duration("GATEWAY_SNAPSHOT_INTERVAL", time.Minute, 0),
		},
		NATSURL:     r.Required("NATS_URL", "nats://localhost:4222"),
		Addr:        r.String("GATEWAY_ADDR", ":8081"),
		ControlAddr: r.String("GATEWAY_CONTROL_ADDR", ":9091"),
		DebugAddr:   r.String("DEBUG_ADDR", ""),
	}
	if v := r.Raw("DEBUG_CLOCK_OFFSET"); v != "" {
		if d, err := time.ParseDuration(v); err != nil {
			r.Fail(fmt.Errorf("DEBUG_CLOCK_OFFSET: %q is not a duration such as 0s or -2.5s", v))
		} else if c.DebugAddr == "" {
			r.Fail(errors.New("DEBUG_CLOCK_OFFSET needs DEBUG_ADDR, where the clock is stepped"))
		} else {
			c.Clock = NewClock(d)
			c.Now = c.Clock.Now
		}
	}
	r.Fail(c.Config.checkLeeway())
	if c.ReportInterval > time.Second {
		r.Fail(fmt.Errorf("GATEWAY_REPORT_INTERVAL: %s is longer than the 1 s heartbeat", c.ReportInterval))
	}
	if up := r.Required("GATEWAY_UPSTREAM", "http://localhost:8082"); up != "" {
		if u, err := url.Parse(up); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.Fail(fmt.Errorf("GATEWAY_UPSTREAM: %q is not an http(s) URL", up))
		} else {
			c.Upstream = u
		}
	}
	return c, r.Err()
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "gatewayd"
	}
	return h
}

// checkLeeway refuses a leeway longer than the revocation leeway: a token is
// accepted until exp plus the leeway, but its revocation's entry expires at
// most the revocation leeway after the token does, so a longer leeway would
// let a revoked token back in.
func (c Config) checkLeeway() error {
	if c.Leeway > events.RevocationLeeway {
		return fmt.Errorf("TOKEN_LEEWAY (%s) must not exceed the revocation leeway (%s): a revoked token would be accepted after its blocklist entry expired", c.Leeway, events.RevocationLeeway)
	}
	return nil
}

// Listeners of a gateway; nil ones are opened on the configured addresses.
type Listeners struct {
	Proxy   net.Listener
	Control net.Listener
}

// Start wires a gateway on nc and starts its background work (the
// revocation feed, JWKS refreshes, blocklist sweeps, activity reports) until
// ctx ends or Close is called. Use its Middleware in any Go service, or its
// Check and Proxy handlers. The gateway answers 503 until it has replayed the
// revocation stream and loaded the JWKS.
func Start(ctx context.Context, cfg Config, nc *nats.Conn, reg prometheus.Registerer, log *slog.Logger) (*Gateway, error) {
	if cfg.JWKSURL == "" {
		return nil, errors.New("gateway: JWKSURL is required")
	}
	if err := cfg.checkLeeway(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 1 << 20
	}
	js, err := jetstream.New(nc)
	if cfg.Domain != "" {
		js, err = jetstream.NewWithDomain(nc, cfg.Domain)
	}
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	metrics := NewMetrics(reg)
	keys := NewKeySource(cfg.JWKSURL, &http.Client{Timeout: 5 * time.Second}, 5*time.Second, log)
	keys.metrics = metrics
	if err := keys.Fetch(ctx); err != nil {
		log.Warn("jwks not available yet; not ready until it is", "error", err.Error())
	}
	verifier, err := NewVerifier(keys, cfg.Issuer, cfg.Audience, cfg.Leeway, cfg.CacheSize)
	if err != nil {
		return nil, err
	}
	bl := NewBlocklist()
	feed := NewFeed(js, bl, cfg.MaxStaleness, metrics, log.With("component", "feed"))
	if cfg.Stream != "" {
		feed.stream = cfg.Stream
	}
	if cfg.Domain != "" && cfg.HubDomain != "" {
		hub, err := jetstream.NewWithDomain(nc, cfg.HubDomain)
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		feed.prepare = EnsureMirror(js, hub, feed.stream)
	}
	if cfg.SnapshotEvery > 0 {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		snaps, err := js.CreateOrUpdateObjectStore(sctx, jetstream.ObjectStoreConfig{Bucket: SnapshotsBucket,
			Description: "snapshots of the gateways' blocklist, for their cold starts", Storage: jetstream.FileStorage})
		cancel()
		if err != nil {
			log.Warn("blocklist snapshots off: their bucket is not available", "bucket", SnapshotsBucket, "error", err.Error())
		} else {
			feed.snapshots, feed.snapshotEvery = snaps, cfg.SnapshotEvery
		}
	}
	var activity *Activity
	if cfg.ActivityEvery > 0 {
		activity = NewActivity(nc, cfg.ActivityEvery, time.Second, metrics, log)
	}
	g := New(verifier, bl, feed, activity, metrics, log)
	if cfg.Now != nil {
		g.now, feed.now = cfg.Now, cfg.Now
	}
	g.tracer, g.traced = telemetry.Tracer(cfg.Tracer), telemetry.Records(cfg.Tracer)
	feed.tracer, feed.traced, feed.name = g.tracer, g.traced, cfg.Name
	if cfg.Version == "" {
		cfg.Version = buildinfo.Version()
	}
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = time.Second
	}
	g.reporter = NewReporter(nc, g, cfg.Name, cfg.Version, cfg.ReportEvery, cfg.ReportInterval, log)

	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	run(func() { _ = feed.Run(bg) })
	if activity != nil {
		run(func() { activity.Run(bg) })
	}
	run(func() { keys.Run(bg, 5*time.Minute) })
	run(func() { retryKeys(bg, keys, log) })
	run(func() { sweep(bg, bl, metrics, g.now) })
	run(func() { g.reporter.Run(bg) })
	go func() { <-ctx.Done(); stop() }()
	g.close = func() { stop(); wg.Wait(); verifier.Close() }
	return g, nil
}

// Serve runs gatewayd until ctx ends.
func Serve(ctx context.Context, cfg AppConfig, lns Listeners, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(reg, "gateway_build_info")
	nc, err := natsx.Connect(cfg.NATSURL, "gatewayd", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	g, err := Start(ctx, cfg.Config, nc, reg, log)
	if err != nil {
		return err
	}
	defer g.Close()
	if cfg.DebugAddr != "" {
		var routes []httpx.DebugRoute
		if cfg.Clock != nil {
			routes = append(routes, httpx.DebugRoute{Pattern: "/debug/clock", Handler: cfg.Clock})
			log.Warn("the gateway's clock is offset for fault tests", "offset", cfg.Clock.Offset().String())
		}
		stop, err := httpx.ServeDebug("gatewayd", cfg.DebugAddr, log, routes...)
		if err != nil {
			return err
		}
		defer stop()
	}

	control := http.NewServeMux()
	control.HandleFunc("GET /v1/check", g.Check)
	control.HandleFunc("GET /healthz", g.Healthz)
	control.HandleFunc("GET /readyz", g.Readyz)
	control.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	servers := []*http.Server{
		{Handler: g.Proxy(cfg.Upstream, NewTransport(), log), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		{Handler: control, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
	}
	listeners := []net.Listener{lns.Proxy, lns.Control}
	for i, addr := range []string{cfg.Addr, cfg.ControlAddr} {
		if listeners[i] == nil {
			if listeners[i], err = net.Listen("tcp", addr); err != nil {
				return fmt.Errorf("gatewayd: listen on %s: %w", addr, err)
			}
		}
	}
	errc := make(chan error, 2)
	for i := range servers {
		go func() { errc <- servers[i].Serve(listeners[i]) }()
	}
	log.Info("gatewayd listening", "proxy", listeners[0].Addr().String(), "control", listeners[1].Addr().String(), "upstream", cfg.Upstream.String())
	select {
	case err := <-errc:
		return fmt.Errorf("gatewayd: %w", err)
	case <-ctx.Done():
	}
	log.Info("gatewayd shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			return fmt.Errorf("gatewayd: shutdown: %w", err)
		}
	}
	return nil
}

// retryKeys fetches the JWKS every second until the first success.
func retryKeys(ctx context.Context, keys *KeySource, log *slog.Logger) {
	for keys.Current() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if err := keys.Fetch(ctx); err == nil {
			log.Info("jwks loaded")
		}
	}
}

func sweep(ctx context.Context, bl *Blocklist, m *Metrics, now func() time.Time) {
	loop.Every(ctx, 5*time.Second, func(context.Context) {
		bl.Sweep(now())
		m.blocklistSize.Set(float64(bl.Len()))
	})
}
