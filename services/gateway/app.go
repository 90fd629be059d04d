package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionguard/revoke/internal/natsx"
)

// AppConfig is everything gatewayd reads from its environment.
type AppConfig struct {
	JWKSURL      string
	NATSURL      string
	Upstream     *url.URL
	Addr         string
	ControlAddr  string
	MaxStaleness time.Duration
	Issuer       string
	Audience     string
	Leeway       time.Duration
	// CacheSize is how many verified tokens are cached.
	CacheSize int64
	// ActivityEvery is the least time between two activity reports of one
	// session.
	ActivityEvery time.Duration
}

// ConfigFromEnv reads the configuration; every problem is reported at once.
func ConfigFromEnv(getenv func(string) string) (AppConfig, error) {
	var errs []error
	str := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	dur := func(k string, def time.Duration) time.Duration {
		v := getenv(k)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a positive duration such as 10s", k, v))
		}
		return d
	}
	c := AppConfig{
		JWKSURL:       getenv("JWKS_URL"),
		NATSURL:       getenv("NATS_URL"),
		Addr:          str("GATEWAY_ADDR", ":8081"),
		ControlAddr:   str("GATEWAY_CONTROL_ADDR", ":9091"),
		MaxStaleness:  dur("GATEWAY_MAX_STALENESS", 10*time.Second),
		Issuer:        str("ISSUER", "http://localhost:8080"),
		Audience:      str("AUDIENCE", "api"),
		Leeway:        dur("TOKEN_LEEWAY", 30*time.Second),
		CacheSize:     1 << 20,
		ActivityEvery: 30 * time.Second,
	}
	if c.JWKSURL == "" {
		errs = append(errs, errors.New("JWKS_URL is required (e.g. http://sessiond:8080/.well-known/jwks.json)"))
	}
	if c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL is required (e.g. nats://localhost:4222)"))
	}
	if up := getenv("GATEWAY_UPSTREAM"); up == "" {
		errs = append(errs, errors.New("GATEWAY_UPSTREAM is required (e.g. http://localhost:8082)"))
	} else if u, err := url.Parse(up); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("GATEWAY_UPSTREAM: %q is not an http(s) URL", up))
	} else {
		c.Upstream = u
	}
	return c, errors.Join(errs...)
}

// Listeners of a gateway; nil ones are opened on the configured addresses.
type Listeners struct {
	Proxy   net.Listener
	Control net.Listener
}

// Serve runs gatewayd until ctx ends.
func Serve(ctx context.Context, cfg AppConfig, lns Listeners, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)

	nc, err := natsx.Connect(cfg.NATSURL, "gatewayd", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	keys := NewKeySource(cfg.JWKSURL, &http.Client{Timeout: 5 * time.Second}, 5*time.Second, log)
	if err := keys.Fetch(ctx); err != nil {
		log.Warn("jwks not available yet; not ready until it is", "error", err.Error())
	}
	verifier, err := NewVerifier(keys, cfg.Issuer, cfg.Audience, cfg.Leeway, cfg.CacheSize)
	if err != nil {
		return err
	}
	defer verifier.Close()
	bl := NewBlocklist()
	feed := NewFeed(js, bl, cfg.MaxStaleness, metrics, log.With("component", "feed"))
	activity := NewActivity(nc, cfg.ActivityEvery, time.Second, metrics, log)
	g := New(verifier, bl, feed, activity, metrics, log)

	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() { _ = feed.Run(bg) }()
	go activity.Run(bg)
	go keys.Run(bg, 5*time.Minute)
	go retryKeys(bg, keys, log)
	go sweep(bg, bl, metrics)

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

func sweep(ctx context.Context, bl *Blocklist, m *Metrics) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			bl.Sweep(now)
			m.blocklistSize.Set(float64(bl.Len()))
		}
	}
}
