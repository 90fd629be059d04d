package sessiond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sessionguard/revoke/internal/buildinfo"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/api"
	"github.com/sessionguard/revoke/services/sessions/erasure"
	"github.com/sessionguard/revoke/services/sessions/portal"
	"github.com/sessionguard/revoke/services/sessions/receipts"
	"github.com/sessionguard/revoke/services/sessions/retention"
	"github.com/sessionguard/revoke/services/sessions/ssf"
)

// Serve runs sessiond until ctx ends, then shuts down gracefully. When ln is
// nil it listens on cfg.Addr. It logs the address it serves on.
func Serve(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
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

	keys, err := sessions.NewKeyStore(pool, cfg.KEK, sessions.KeyRetention(cfg.Service), log)
	if err != nil {
		return err
	}
	if err := keys.Init(ctx); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(reg, "sessiond_build_info")
	metrics := sessions.NewMetrics(reg)
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
	relayCfg.Tracer = cfg.Tracer
	relayCfg.Subjects = outboxSubjects
	relayCfg.Prepare = func(ctx context.Context) error {
		return natsx.Explain(nc, natsx.EnsureStreams(ctx, js, cfg.StreamReplicas,
			events.RevocationsStream(cfg.Service.AccessTTL), events.IdentityStream(), events.SessionsStream(), events.SignalsStream()))
	}
	// Receipts: the fleet from the gateways' reports, and the relay's acks.
	fleet := receipts.NewFleet(cfg.GatewaySilence, time.Now, reg)
	rc := receipts.NewStore(pool, fleet, time.Now, reg, log.With("component", "receipts"))
	relayCfg.OnAck = rc.Acked
	// The relay is sessiond's: its metrics carry sessiond's prefix.
	relay := outbox.New(pool, js, relayCfg, prometheus.WrapRegistererWithPrefix("sessiond_", reg), log.With("component", "outbox"))
	cfg.Service.Tracer = cfg.Tracer
	svc, err := sessions.NewService(pool, keys, cfg.KEK, cfg.Service, metrics, relay, log)
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
	// The Shared Signals transmitter: its own signing keys, its streams.
	ssfKeys, err := ssf.NewKeys(pool, cfg.KEK)
	if err != nil {
		return err
	}
	if err := ssfKeys.Init(ctx); err != nil {
		return err
	}
	transmitter, err := ssf.New(pool, js, svc, ssfKeys, relay, cfg.KEK, cfg.SSF, ssf.NewMetrics(reg), log.With("component", "ssf"))
	if err != nil {
		return err
	}
	handler := Routes(log, reg, httpx.RouterOptions{Tracer: cfg.Tracer, TrustedProxies: cfg.TrustedProxies},
		api.NewHandler(svc, rc, log, reg, cfg.TrustedProxies, ready),
		portal.New(svc, rc, portal.Config{InsecureCookies: !cfg.PortalCookieSecure, KEK: cfg.KEK, TrustedProxies: cfg.TrustedProxies, Signals: transmitter}, log),
		transmitter)

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("sessiond: listen on %s: %w", cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	go keys.Run(bg, 30*time.Second)
	appliedSub, err := subscribeApplied(nc, fleet, log)
	if err != nil {
		return fmt.Errorf("nats: subscribe to applied reports: %w", err)
	}
	defer func() { _ = appliedSub.Unsubscribe() }()
	activitySub, err := subscribeActivity(bg, nc, svc, log)
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
	erasures := erasure.New(svc, js, reg, log.With("component", "erasure"))
	purger := retention.New(pool, cfg.Retention, reg, log.With("component", "retention"))
	var workers sync.WaitGroup
	workers.Add(6)
	go func() { defer workers.Done(); transmitter.Run(bg) }()
	go func() { defer workers.Done(); svc.RunRuleMarker(bg, time.Second) }()
	go func() { defer workers.Done(); svc.RunPolicySweep(bg, cfg.PolicySweep) }()
	go func() { defer workers.Done(); rc.Run(bg) }()
	go func() { defer workers.Done(); erasures.Run(bg) }()
	go func() { defer workers.Done(); purger.Run(bg) }()
	defer workers.Wait() // runs after stopBG below
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = relay.Run(bg)
	}()
	defer func() { stopBG(); <-relayDone }()

	if cfg.DebugAddr != "" {
		stop, err := httpx.ServeDebug("sessiond", cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
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

// Routes is sessiond's HTTP surface: the API, the portal and the Shared
// Signals transmitter on one router,
// with the request plumbing and metrics of httpx.NewRouter.
func Routes(log *slog.Logger, reg prometheus.Registerer, o httpx.RouterOptions, a *api.Handler, p *portal.Portal, t *ssf.Transmitter) http.Handler {
	r := httpx.NewRouter(log, httpx.NewMetrics(reg, "sessiond"), o)
	a.Mount(r)
	p.Mount(r)
	if t != nil { // a test of the API alone runs no transmitter
		t.Mount(r)
	}
	return r
}

// subscribeActivity feeds the gateways' activity reports to svc; replicas
// share them through a queue group.
func subscribeActivity(ctx context.Context, nc *nats.Conn, svc *sessions.Service, log *slog.Logger) (*nats.Subscription, error) {
	return nc.QueueSubscribe(events.SubjectSessionActivity, "sessiond", func(m *nats.Msg) {
		ev, err := events.Decode(m.Subject, m.Data)
		if err != nil {
			log.Warn("activity report skipped", "error", err.Error())
			return
		}
		a := ev.(events.SessionActivity)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := svc.RecordActivity(ctx, a.Sessions); err != nil {
			log.Warn("activity report not recorded", "error", err.Error())
		}
	})
}

// subscribeApplied feeds the gateways' applied reports to the fleet. Every
// replica hears every report (no queue group): each answers receipts from
// its own view of the fleet.
func subscribeApplied(nc *nats.Conn, fleet *receipts.Fleet, log *slog.Logger) (*nats.Subscription, error) {
	return nc.Subscribe(events.SubjectGatewayApplied, func(m *nats.Msg) {
		ev, err := events.Decode(m.Subject, m.Data)
		if err != nil {
			log.Warn("applied report skipped", "error", err.Error())
			return
		}
		fleet.Report(ev.(events.GatewayApplied))
	})
}

// outboxSubjects are the subjects sessiond's outbox publishes (a "*" for
// an org's or a stream's id), whose series of
// sessiond_outbox_published_total exist from the start.
var outboxSubjects = []string{
	events.SubjectSessionRevoked, events.SubjectTokenRevoked, events.SubjectUserRevoked, events.SubjectOrgRevoked,
	events.SubjectUserErased, events.SubjectSessionCreated,
	events.SignalsPrefix + "org.*.sessions", events.SignalsPrefix + "org.*.account", events.SignalsPrefix + "stream.*",
}
