package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus metrics.
type Metrics struct {
	decisions     *prometheus.CounterVec
	latency       prometheus.Histogram
	blocklistSize prometheus.Gauge
	replaySeconds prometheus.Gauge
	staleness     prometheus.Gauge
	lag           prometheus.Histogram
	applied       prometheus.Counter
	feedErrors    prometheus.Counter
	clamped       prometheus.Counter
	activity      prometheus.Counter
	// JWKS fetches by result, and when one last succeeded: an alert on a
	// JWKS that cannot be fetched fires before a key rotation makes every
	// new token unknown here.
	jwksOK, jwksFailed prometheus.Counter
	jwksLastSuccess    prometheus.Gauge

	// resolved counters of the hot path, so a decision costs no label
	// lookup; every series exists from the start, so that an alert on one
	// can be written before its first event.
	allowed, stale prometheus.Counter
	denied         map[string]prometheus.Counter // by reason (denyReasons)
}

// denyReasons are the reason label of a refusal: why the token is not
// valid, or what revoked it.
var denyReasons = []string{
	reasonMissing, reasonMalformed, reasonExpired, reasonNotYetValid, reasonBadSignature, reasonUnknownKey,
	reasonWrongIssuer, reasonWrongAudience, reasonRevokedSession, reasonRevokedToken, reasonRevokedUser, reasonRevokedRule,
}

const (
	reasonStale          = "stale" // of an unavailable decision (503), not a deny
	reasonMissing        = "missing"
	reasonMalformed      = "malformed"
	reasonExpired        = "expired"
	reasonNotYetValid    = "not_yet_valid"
	reasonBadSignature   = "bad_signature"
	reasonUnknownKey     = "unknown_key"
	reasonWrongIssuer    = "wrong_issuer"
	reasonWrongAudience  = "wrong_audience"
	reasonRevokedSession = "revoked_session"
	reasonRevokedToken   = "revoked_token"
	reasonRevokedUser    = "revoked_user"
	reasonRevokedRule    = "revoked_rule"
)

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_decisions_total", Help: "Auth decisions by outcome (allow, deny, unavailable) and reason (deny: missing, malformed, expired, not_yet_valid, bad_signature, unknown_key, wrong_issuer, wrong_audience, revoked_session, revoked_token, revoked_user, revoked_rule).",
		}, []string{"outcome", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gateway_decision_seconds", Help: "Time to decide on one request.",
			Buckets: prometheus.ExponentialBuckets(0.000_000_5, 2, 20),
		}),
		blocklistSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_blocklist_entries", Help: "Entries in the blocklist (live, or expired and not yet swept).",
		}),
		replaySeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_replay_seconds", Help: "Time the start-up replay of the REVOCATIONS stream took.",
		}),
		staleness: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_staleness_seconds", Help: "Time since the blocklist was last confirmed current.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gateway_revocation_lag_seconds", Help: "Time from a revocation's revoked_at to its application here.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_revocations_applied_total", Help: "Revocation events applied to the blocklist.",
		}),
		feedErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_feed_errors_total", Help: "Revocation events that could not be decoded and were skipped.",
		}),
		clamped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_revocations_clamped_total", Help: "Revocation events whose expires_at lay beyond the longest life a token may have; applied until that bound instead.",
		}),
		activity: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_activity_reports_total", Help: "Session activity reports published.",
		}),
	}
	m.allowed = m.decisions.WithLabelValues("allow", "valid")
	m.stale = m.decisions.WithLabelValues("unavailable", reasonStale)
	m.denied = make(map[string]prometheus.Counter, len(denyReasons))
	for _, r := range denyReasons {
		m.denied[r] = m.decisions.WithLabelValues("deny", r)
	}
	jwks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_jwks_fetches_total", Help: "Fetches of the issuer's JWKS by result (ok, error).",
	}, []string{"result"})
	m.jwksOK, m.jwksFailed = jwks.WithLabelValues("ok"), jwks.WithLabelValues("error")
	m.jwksLastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gateway_jwks_last_success_timestamp_seconds", Help: "When the JWKS was last fetched successfully (Unix time; 0 before the first).",
	})
	reg.MustRegister(m.decisions, m.latency, m.blocklistSize, m.replaySeconds, m.staleness, m.lag, m.applied, m.feedErrors, m.clamped, m.activity,
		jwks, m.jwksLastSuccess)
	return m
}
