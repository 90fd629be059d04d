// Package sessiond wires the session service into a process: it reads the
// configuration from the environment, opens PostgreSQL and NATS, and runs
// the API and the portal on one HTTP server with the outbox relay, the
// erasure consumer, the activity subscription and the retention purge
// beside them. cmd/sessiond, the dev stack and the load tool all start
// sessiond through Serve.
package sessiond

import (
	"errors"
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/envconf"
	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/receipts"
	"github.com/sessionguard/revoke/services/sessions/retention"
	"github.com/sessionguard/revoke/services/sessions/ssf"
)

// Config is everything sessiond reads from its environment.
type Config struct {
	DatabaseURL       string
	NATSURL           string
	Addr              string
	KEK               []byte
	Service           sessions.Config
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
	Retention      retention.Config
	// OutboxRetention is how long sent outbox rows are kept.
	OutboxRetention time.Duration
	// GatewaySilence is how long a gateway may go unheard before it leaves
	// the fleet and every pending receipt's expected set
	// (GATEWAY_SILENCE_TIMEOUT, default 30 s, the contract's).
	GatewaySilence time.Duration
	// PortalCookieSecure marks the portal's cookies Secure
	// (PORTAL_COOKIE_SECURE, default true); only a plain-http dev setup turns
	// it off.
	PortalCookieSecure bool
	// DebugAddr, when set (DEBUG_ADDR, e.g. 127.0.0.1:6060), serves Go's
	// profiler (net/http/pprof) on a listener of its own, never on Addr.
	DebugAddr string
	// Tracer traces requests, revocations' transactions and the relay's
	// publishes (nil: the no-op provider); cmd/sessiond sets it from the
	// OTEL_* variables (internal/telemetry).
	Tracer trace.TracerProvider
	// PolicySweep is how often the session policies' sweep revokes idle and
	// too old sessions (POLICY_SWEEP_INTERVAL, default 30 s; at most 1 m,
	// as the contract publishes their revocations within a minute).
	PolicySweep time.Duration
	// SSF configures the Shared Signals transmitter: SSF_PAUSE_AFTER (how
	// long a push receiver may fail before its stream is paused, default
	// 1h), SSF_ALLOW_HTTP (plain-http push endpoints, for a dev setup) and
	// SSF_ALLOW_PRIVATE_NETWORKS (push endpoints on non-public addresses).
	SSF ssf.Config
}

// ServiceConfigFromEnv reads the settings of the session service itself:
// ISSUER, AUDIENCE, the token TTLs, REFRESH_REUSE_GRACE, TOKEN_LEEWAY,
// LOGIN_RATE_LIMIT and LOGIN_IP_RATE_LIMIT.
func ServiceConfigFromEnv(getenv func(string) string) (sessions.Config, error) {
	r := envconf.New(getenv)
	c := serviceConfig(r)
	if r.OK() {
		r.Fail(c.Validate())
	}
	return c, r.Err()
}

func serviceConfig(r *envconf.Reader) sessions.Config {
	c := sessions.Config{
		Issuer:     r.String("ISSUER", "http://localhost:8080"),
		Audience:   r.String("AUDIENCE", "api"),
		AccessTTL:  r.Duration("ACCESS_TOKEN_TTL", 5*time.Minute, 0),
		RefreshTTL: r.Duration("REFRESH_TOKEN_TTL", 720*time.Hour, 0),
		ReuseGrace: r.Duration("REFRESH_REUSE_GRACE", 10*time.Second, 0),
		Leeway:     r.Duration("TOKEN_LEEWAY", 30*time.Second, 0),
		Password:   sessions.DefaultPasswordParams,
	}
	var err error
	c.LoginLimit, err = sessions.ParseRateLimit("LOGIN_RATE_LIMIT", r.String("LOGIN_RATE_LIMIT", "10/15m"))
	r.Fail(err)
	c.LoginIPLimit, err = sessions.ParseRateLimit("LOGIN_IP_RATE_LIMIT", r.String("LOGIN_IP_RATE_LIMIT", "100/15m"))
	r.Fail(err)
	return c
}

// ConfigFromEnv reads the whole configuration of sessiond. Every problem is
// reported at once.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{
		DatabaseURL:       r.Required("DATABASE_URL", "postgres://user:pass@localhost:5432/revoke"),
		NATSURL:           r.Required("NATS_URL", "nats://localhost:4222"),
		Addr:              r.String("SESSIOND_ADDR", ":8080"),
		BootstrapEmail:    r.Raw("BOOTSTRAP_ADMIN_EMAIL"),
		BootstrapPassword: r.Raw("BOOTSTRAP_ADMIN_PASSWORD"),
		Service:           serviceConfig(r),
		StreamReplicas:    r.Int("NATS_STREAM_REPLICAS", 1, 1, 5),
		Retention:         retention.Default(),
	}
	c.Retention.Sessions = r.Duration("SESSION_RETENTION", c.Retention.Sessions, 0)
	c.Retention.UsedRefreshTokens = r.Duration("USED_REFRESH_TOKEN_RETENTION", c.Retention.UsedRefreshTokens, 0)
	c.Retention.Revocations = r.Duration("REVOCATION_RETENTION", c.Retention.Revocations, 0)
	c.Retention.Every = r.Duration("RETENTION_INTERVAL", c.Retention.Every, time.Second)
	c.Retention.LoginFailures = max(c.Retention.LoginFailures, c.Service.LoginLimit.Window, c.Service.LoginIPLimit.Window)
	c.OutboxRetention = r.Duration("OUTBOX_RETENTION", 24*time.Hour, 0)
	c.PortalCookieSecure = r.Bool("PORTAL_COOKIE_SECURE", true)
	c.GatewaySilence = r.Duration("GATEWAY_SILENCE_TIMEOUT", receipts.DefaultSilence, time.Second)
	c.DebugAddr = r.String("DEBUG_ADDR", "")
	c.PolicySweep = r.Duration("POLICY_SWEEP_INTERVAL", 30*time.Second, 100*time.Millisecond)
	if c.PolicySweep > time.Minute {
		r.Fail(errors.New("POLICY_SWEEP_INTERVAL: at most 1m: idle and too old sessions must be revoked within a minute"))
	}
	c.SSF = ssf.DefaultConfig(c.Service.Issuer)
	c.SSF.PauseAfter = r.Duration("SSF_PAUSE_AFTER", c.SSF.PauseAfter, time.Second)
	c.SSF.AllowHTTP = r.Bool("SSF_ALLOW_HTTP", false)
	c.SSF.AllowPrivate = r.Bool("SSF_ALLOW_PRIVATE_NETWORKS", false)
	if kek := r.Raw("KEY_ENCRYPTION_KEY"); kek == "" {
		r.Fail(errors.New("KEY_ENCRYPTION_KEY is required: 32 random bytes in base64 (`openssl rand -base64 32`); it seals the signing keys"))
	} else {
		var err error
		c.KEK, err = sessions.ParseKEK(kek)
		r.Fail(err)
	}
	var err error
	if c.TrustedProxies, err = httpx.ParsePrefixes(r.Raw("TRUSTED_PROXIES")); err != nil {
		r.Fail(errors.New("TRUSTED_PROXIES: " + err.Error()))
	}
	if (c.BootstrapEmail == "") != (c.BootstrapPassword == "") {
		r.Fail(errors.New("BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD go together"))
	}
	if r.OK() {
		r.Fail(c.Service.Validate())
	}
	return c, r.Err()
}
