package outbox

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published      *prometheus.CounterVec
	duplicates     prometheus.Counter
	errors         *prometheus.CounterVec
	publishLatency prometheus.Histogram
	lag            prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool, subjects []string) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_published_total", Help: "Outbox events acknowledged by JetStream, by subject (UUID segments as *; duplicates not counted).",
		}, []string{"subject"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_duplicates_total", Help: "Publishes JetStream acknowledged as duplicates of an event it already held (a row published again after a crash, a lost mark, or by two relays).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_errors_total", Help: "Outbox relay errors by kind (publish, database, metrics: a gauge's query at a scrape).",
		}, []string{"kind"}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outbox_publish_batch_seconds", Help: "Time to publish one batch and receive every ack.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outbox_commit_to_ack_seconds", Help: "Time from an outbox row's insert (sweep) or commit (fast path) to JetStream's ack of it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
	}
	depth := &queryGauge{pool: pool, errors: m.errors.WithLabelValues("metrics"),
		desc: prometheus.NewDesc("outbox_depth", "Outbox rows not yet acknowledged by JetStream (absent while the database cannot be asked).", nil, nil),
		sql:  `SELECT count(*) FROM outbox WHERE sent_at IS NULL`}
	age := &queryGauge{pool: pool, errors: m.errors.WithLabelValues("metrics"),
		desc: prometheus.NewDesc("outbox_oldest_unsent_age_seconds", "Age of the oldest unsent outbox row (0 when none; absent while the database cannot be asked).", nil, nil),
		sql:  `SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) FROM outbox WHERE sent_at IS NULL`}
	// Every series from the start, so that alerts on them can be written
	// before their first event.
	for _, k := range []string{"publish", "database", "metrics"} {
		m.errors.WithLabelValues(k)
	}
	for _, s := range subjects {
		m.published.WithLabelValues(subjectKind(s))
	}
	reg.MustRegister(m.published, m.duplicates, m.errors, m.publishLatency, m.lag, depth, age)
	return m
}

// queryGauge is a gauge read from PostgreSQL at each scrape. When the
// database cannot be asked, the sample is left out (not a made-up value an
// alert would take for real) and the failure counted in
// outbox_errors_total{kind="metrics"}.
type queryGauge struct {
	pool   *pgxpool.Pool
	desc   *prometheus.Desc
	sql    string
	errors prometheus.Counter
}

func (g *queryGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *queryGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var v float64
	if err := g.pool.QueryRow(ctx, g.sql).Scan(&v); err != nil {
		g.errors.Inc()
		return
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
}

// subjectKind is a subject as a label: each segment that is a UUID (an
// org's, a stream's) becomes "*", so that the series are as many as the
// kinds of event, not as the orgs.
func subjectKind(subject string) string {
	parts := strings.Split(subject, ".")
	for i, p := range parts {
		if len(p) == 36 && p[8] == '-' && p[13] == '-' && p[18] == '-' && p[23] == '-' {
			parts[i] = "*"
		}
	}
	return strings.Join(parts, ".")
}

// acked records JetStream's ack of an event published lag after its row
// was written.
func (m *metrics) acked(subject string, duplicate bool, lag time.Duration) {
	if duplicate {
		m.duplicates.Inc()
		return
	}
	m.published.WithLabelValues(subjectKind(subject)).Inc()
	m.lag.Observe(lag.Seconds())
}
