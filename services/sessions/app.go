package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/internal/postgres"
)

// AppConfig is everything sessiond reads from its environment.
type AppConfig struct {
	DatabaseURL       string
	NATSURL           string
	Addr              string
	KEK               []byte
	Service           Config
	TrustedProxies    []netip.Prefix
	BootstrapEmail    string
	BootstrapPassword string
	// Migrate applies pending migrations at start (the dev stack); production
	// runs `revokectl migrate` instead and sessiond refuses to be ready while
	// migrations are pending.
	Migrate bool
	// StreamReplicas is the JetStream replica count of the streams sessiond
	// creates (3 in a cluster).
	StreamReplicas int
	Retention      RetentionConfig
	// OutboxRetention is how long sent outbox rows are kept.
	OutboxRetention time.Duration
	// PortalCookieSecure marks the portal's cookies Secure
	// (PORTAL_COOKIE_SECURE, default true); only a plain-http dev setup turns
	// it off.
	PortalCookieSecure bool
}

// envReader collects every configuration problem, to report them at once.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (e *envReader) str(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

func (e *envReader) boolean(name string, def bool) bool {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q must be true or false", name, v))
	}
	return b
}

func (e *envReader) dur(name string, def time.Duration) time.Duration {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a duration such as 5m or 720h", name, v))
	}
	return d
}

// ServiceConfigFromEnv reads the settings of the session service itself:
// ISSUER, AUDIENCE, the token TTLs, REFRESH_REUSE_GRACE, TOKEN_LEEWAY and
// LOGIN_RATE_LIMIT.
func ServiceConfigFromEnv(getenv func(string) string) (Config, error) {
	e := &envReader{getenv: getenv}
	c := e.serviceConfig()
	if len(e.errs) == 0 {
		if err := c.Validate(); err != nil {
			e.errs = append(e.errs, err)
		}
	}
	return c, errors.Join(e.errs...)
}

func (e *envReader) serviceConfig() Config {
	c := Config{
		Issuer:     e.str("ISSUER", "http://localhost:8080"),
		Audience:   e.str("AUDIENCE", "api"),
		AccessTTL:  e.dur("ACCESS_TOKEN_TTL", 5*time.Minute),
		RefreshTTL: e.dur("REFRESH_TOKEN_TTL", 720*time.Hour),
		ReuseGrace: e.dur("REFRESH_REUSE_GRACE", 10*time.Second),
		Leeway:     e.dur("TOKEN_LEEWAY", 30*time.Second),
		Password:   DefaultPasswordParams,
	}
	var err error
	if c.LoginLimit, err = ParseRateLimit("LOGIN_RATE_LIMIT", e.str("LOGIN_RATE_LIMIT", "10/15m")); err != nil {
		e.errs = append(e.errs, err)
	}
	if c.LoginIPLimit, err = ParseRateLimit("LOGIN_IP_RATE_LIMIT", e.str("LOGIN_IP_RATE_LIMIT", "100/15m")); err != nil {
		e.errs = append(e.errs, err)
	}
	return c
}

// ConfigFromEnv reads the whole configuration of sessiond. Every problem is
// reported at once.
func ConfigFromEnv(getenv func(string) string) (AppConfig, error) {
	e := &envReader{getenv: getenv}
	c := AppConfig{
		DatabaseURL:       getenv("DATABASE_URL"),
		NATSURL:           getenv("NATS_URL"),
		Addr:              e.str("SESSIOND_ADDR", ":8080"),
		BootstrapEmail:    getenv("BOOTSTRAP_ADMIN_EMAIL"),
		BootstrapPassword: getenv("BOOTSTRAP_ADMIN_PASSWORD"),
		Service:           e.serviceConfig(),
		StreamReplicas:    1,
		Retention:         DefaultRetention(),
	}
	c.Retention.Sessions = e.dur("SESSION_RETENTION", c.Retention.Sessions)
	c.Retention.UsedRefreshTokens = e.dur("USED_REFRESH_TOKEN_RETENTION", c.Retention.UsedRefreshTokens)
	c.Retention.Revocations = e.dur("REVOCATION_RETENTION", c.Retention.Revocations)
	c.Retention.LoginFailures = max(c.Retention.LoginFailures, c.Service.LoginLimit.Window, c.Service.LoginIPLimit.Window)
	c.OutboxRetention = e.dur("OUTBOX_RETENTION", 24*time.Hour)
	c.PortalCookieSecure = e.boolean("PORTAL_COOKIE_SECURE", true)
	if c.DatabaseURL == "" {
		e.errs = append(e.errs, errors.New("DATABASE_URL is required (e.g. postgres://user:pass@localhost:5432/revoke)"))
	}
	if c.NATSURL == "" {
		e.errs = append(e.errs, errors.New("NATS_URL is required (e.g. nats://localhost:4222)"))
	}
	if kek := getenv("KEY_ENCRYPTION_KEY"); kek == "" {
		e.errs = append(e.errs, errors.New("KEY_ENCRYPTION_KEY is required: 32 random bytes in base64 (`openssl rand -base64 32`); it seals the signing keys"))
	} else if b, err := ParseKEK(kek); err != nil {
		e.errs = append(e.errs, err)
	} else {
		c.KEK = b
	}
	if v := getenv("NATS_STREAM_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			e.errs = append(e.errs, fmt.Errorf("NATS_STREAM_REPLICAS: %q must be 1 to 5", v))
		}
		c.StreamReplicas = n
	}
	var err error
	if c.TrustedProxies, err = httpx.ParsePrefixes(getenv("TRUSTED_PROXIES")); err != nil {
		e.errs = append(e.errs, fmt.Errorf("TRUSTED_PROXIES: %w", err))
	}
	if (c.BootstrapEmail == "") != (c.BootstrapPassword == "") {
		e.errs = append(e.errs, errors.New("BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD go together"))
	}
	if len(e.errs) == 0 {
		if err := c.Service.Validate(); err != nil {
			e.errs = append(e.errs, err)
		}
	}
	return c, errors.Join(e.errs...)
}

// ParseRateLimit parses the setting name's value "N/duration", e.g. "10/15m".
func ParseRateLimit(name, s string) (RateLimit, error) {
	n, d, ok := strings.Cut(s, "/")
	limit, err1 := strconv.Atoi(n)
	window, err2 := time.ParseDuration(d)
	if !ok || err1 != nil || err2 != nil || limit < 1 || window <= 0 {
		return RateLimit{}, fmt.Errorf("%s: %q must be N/duration, e.g. 10/15m", name, s)
	}
	return RateLimit{N: limit, Window: window}, nil
}

// Serve runs sessiond until ctx ends, then shuts down gracefully. When ln is
// nil it listens on cfg.Addr. It logs the address it serves on.
func Serve(ctx context.Context, cfg AppConfig, ln net.Listener, log *slog.Logger) error {
	pool, err := postgres.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if cfg.Migrate {
		n, err := postgres.Migrate(ctx, pool)
		if err != nil {
			return err
		}
		log.Info("migrations applied", "count", n)
	}
	if pending, err := postgres.Pending(ctx, pool); err != nil {
		return err
	} else if pending {
		return errors.New("the database schema is not current: run `revokectl migrate` first")
	}

	keys, err := NewKeyStore(pool, cfg.KEK, KeyRetention(cfg.Service), log)
	if err != nil {
		return err
	}
	if err := keys.Init(ctx); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)
	nc, err := natsx.Connect(cfg.NATSURL, "sessiond", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	relayCfg := outbox.DefaultConfig()
	// An ack that never comes (lost in a JetStream leader change, say)
	// would hold its slot of the async-publish window for ever; the relay
	// has given up on it by then, and the sweep publishes the row again.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(relayCfg.AckTimeout))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	relayCfg.Retention = cfg.OutboxRetention
	relayCfg.Prepare = func(ctx context.Context) error {
		return natsx.EnsureStreams(ctx, js, cfg.StreamReplicas,
			events.RevocationsStream(cfg.Service.AccessTTL), events.IdentityStream(), events.SessionsStream())
	}
	relay := outbox.New(pool, js, relayCfg, reg, log.With("component", "outbox"))
	svc, err := NewService(pool, keys, cfg.KEK, cfg.Service, metrics, relay, log)
	if err != nil {
		return err
	}
	if cfg.BootstrapEmail != "" {
		created, err := svc.BootstrapAdmin(ctx, cfg.BootstrapEmail, cfg.BootstrapPassword)
		if err != nil {
			return err
		}
		if created {
			log.Info("bootstrap global admin created", "email", cfg.BootstrapEmail)
		}
	}

	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if pending, err := postgres.Pending(ctx, pool); err != nil || pending {
			return fmt.Errorf("migrations pending or unknown: %v", err)
		}
		return nil
	}
	h := NewHandler(svc, log, metrics, reg, cfg.TrustedProxies, ready,
		WithPortal(PortalConfig{CookieSecure: cfg.PortalCookieSecure, KEK: cfg.KEK}))

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("sessiond: listen on %s: %w", cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           h.Routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	go keys.Run(bg, 30*time.Second)
	activitySub, err := svc.SubscribeActivity(bg, nc)
	if err != nil {
		return fmt.Errorf("nats: subscribe to activity reports: %w", err)
	}
	defer func() { _ = activitySub.Unsubscribe() }()
	// Create the streams now if NATS is there; the relay retries otherwise.
	prepCtx, cancelPrep := context.WithTimeout(ctx, 2*time.Second)
	if err := relayCfg.Prepare(prepCtx); err != nil {
		log.Warn("nats streams not created yet; retrying in the background", "error", err.Error())
	}
	cancelPrep()
	erasure := NewErasure(svc, js, reg, log.With("component", "erasure"))
	retention := NewRetention(pool, cfg.Retention, reg, log.With("component", "retention"))
	var workers sync.WaitGroup
	workers.Add(2)
	go func() { defer workers.Done(); erasure.Run(bg) }()
	go func() { defer workers.Done(); retention.Run(bg) }()
	defer workers.Wait() // runs after stopBG below
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = relay.Run(bg)
	}()
	defer func() { stopBG(); <-relayDone }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("sessiond listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("sessiond: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	log.Info("sessiond shutting down")
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("sessiond: shutdown: %w", err)
	}
	return nil
}
