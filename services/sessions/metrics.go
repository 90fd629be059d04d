package sessions

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
)

// Metrics are the session service's Prometheus metrics.
type Metrics struct {
	logins      *prometheus.CounterVec
	refreshes   *prometheus.CounterVec
	reuse       prometheus.Counter
	revocations *prometheus.CounterVec

	hashesRunning prometheus.Gauge
	hashesShed    prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_logins_total", Help: "Login attempts by result (success, failed, rate_limited).",
		}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_refreshes_total", Help: "Refresh attempts by result (rotated, grace, invalid, reuse, policy: ended by the org's session policy, error).",
		}, []string{"result"}),
		reuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_refresh_reuse_detected_total", Help: "Refresh tokens presented after rotation and grace; each revoked a session.",
		}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_sessions_revoked_total", Help: "Sessions revoked, by reason.",
		}, []string{"reason"}),
		hashesRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessiond_password_hashes_running", Help: "Password hashes being computed now (bounded by one per CPU).",
		}),
		hashesShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_password_hashes_shed_total", Help: "Logins answered 503 because every password hashing turn and queue place was taken.",
		}),
	}
	// Every series from the start, so that an alert on one (login failures
	// spiking, say) can be written before its first event.
	for _, r := range []string{"success", "failed", "rate_limited", "session_limit"} {
		m.logins.WithLabelValues(r)
	}
	for _, r := range []refreshResult{refreshRotated, refreshGrace, refreshInvalid, refreshReuse, refreshEnded, {label: "error"}} {
		m.refreshes.WithLabelValues(r.label)
	}
	for _, r := range events.Reasons {
		m.revocations.WithLabelValues(string(r))
	}
	reg.MustRegister(m.logins, m.refreshes, m.reuse, m.revocations, m.hashesRunning, m.hashesShed)
	return m
}
