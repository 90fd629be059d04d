package outbox

import (
	"context"
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

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_published_total", Help: "Outbox events acknowledged by JetStream, by subject (duplicates not counted).",
		}, []string{"subject"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_duplicates_total", Help: "Publishes JetStream acknowledged as duplicates of an event it already held (a row published again after a crash, a lost mark, or by two relays).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_errors_total", Help: "Outbox relay errors by kind (publish, database).",
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
	query := func(sql string) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var v float64
			if err := pool.QueryRow(ctx, sql).Scan(&v); err != nil {
				return -1
			}
			return v
		}
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "outbox_depth", Help: "Outbox rows not yet acknowledged by JetStream (-1 when unknown).",
	}, query(`SELECT count(*) FROM outbox WHERE sent_at IS NULL`))
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "outbox_oldest_unsent_age_seconds", Help: "Age of the oldest unsent outbox row (0 when none, -1 when unknown).",
	}, query(`SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) FROM outbox WHERE sent_at IS NULL`))
	reg.MustRegister(m.published, m.duplicates, m.errors, m.publishLatency, m.lag, depth, age)
	return m
}

// acked records JetStream's ack of an event published lag after its row
// was written.
func (m *metrics) acked(subject string, duplicate bool, lag time.Duration) {
	if duplicate {
		m.duplicates.Inc()
		return
	}
	m.published.WithLabelValues(subject).Inc()
	m.lag.Observe(lag.Seconds())
}
