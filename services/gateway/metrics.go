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

	// resolved counters of the hot path, so a decision costs no label lookup
	allowed, revoked, invalid, stale prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_decisions_total", Help: "Auth decisions by outcome (allow, deny, unavailable) and reason.",
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
	m.revoked = m.decisions.WithLabelValues("deny", "revoked")
	m.invalid = m.decisions.WithLabelValues("deny", "invalid")
	m.stale = m.decisions.WithLabelValues("unavailable", "stale")
	reg.MustRegister(m.decisions, m.latency, m.blocklistSize, m.replaySeconds, m.staleness, m.lag, m.applied, m.feedErrors, m.clamped, m.activity)
	return m
}
