package ssf

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the transmitter's, per stream (a bounded set: a receiver
// holds at most Config.MaxStreamsPerClient).
type Metrics struct {
	delivered *prometheus.CounterVec
	failed    *prometheus.CounterVec
	depth     *prometheus.GaugeVec
	oldest    *prometheus.GaugeVec
	latency   prometheus.Histogram
	leader    prometheus.Gauge
}

// NewMetrics registers the transmitter's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sessiond_ssf_sets_delivered_total",
			Help: "SETs a receiver accepted (push: 202; poll: acknowledged), per stream."}, []string{"stream_id"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sessiond_ssf_sets_failed_total",
			Help: "Failed SET deliveries per stream: retry (a push to try again), rejected (a receiver's RFC 8935 error or poll setErr), dropped (a disabled stream's)."},
			[]string{"stream_id", "kind"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sessiond_ssf_queue_depth",
			Help: "Signals not yet delivered to a stream (its JetStream consumer's pending and unacknowledged) plus, for poll, SETs not yet acknowledged."},
			[]string{"stream_id"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sessiond_ssf_oldest_undelivered_seconds",
			Help: "Age of the oldest signal or SET not yet delivered to a stream; 0 when none waits."}, []string{"stream_id"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sessiond_ssf_push_latency_seconds",
			Help:    "From a signal's publish to its receiver's 202, for every pushed SET.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 5, 30, 300}}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sessiond_ssf_delivering",
			Help: "1 while this replica runs the streams' delivery (it holds the transmitter's lock)."}),
	}
	reg.MustRegister(m.delivered, m.failed, m.depth, m.oldest, m.latency, m.leader)
	return m
}

// forget drops the series of a deleted stream.
func (m *Metrics) forget(id string) {
	m.delivered.DeleteLabelValues(id)
	m.depth.DeleteLabelValues(id)
	m.oldest.DeleteLabelValues(id)
	for _, k := range []string{"retry", "rejected", "dropped"} {
		m.failed.DeleteLabelValues(id, k)
	}
}
