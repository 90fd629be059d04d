// Package retention purges finished data of the session service: expired
// and revoked sessions, rotated refresh tokens, expired revocations, old
// revocation receipts and old failed logins, in small batches, one replica at a time.
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/loop"
)

// Config says how long finished data is kept.
type Config struct {
	// Sessions: expired or revoked sessions (with their refresh tokens)
	// are deleted this long after they ended; revocation receipts this
	// long after they were made.
	Sessions time.Duration
	// UsedRefreshTokens: rotated refresh tokens are kept this long after
	// their rotation, so that reuse is detected (and the session revoked)
	// within that time; later an old token is simply invalid.
	UsedRefreshTokens time.Duration
	// Revocations: revocation rows are deleted this long after they expire.
	Revocations time.Duration
	// LoginFailures: failed logins are kept this long (at least the
	// LOGIN_RATE_LIMIT window).
	LoginFailures time.Duration
	// Every is how often the purge runs.
	Every time.Duration
	// Batch is the most rows one statement deletes.
	Batch int
}

// Default keeps finished sessions a week, used refresh tokens a
// day, and expired revocations an hour.
func Default() Config {
	return Config{Sessions: 7 * 24 * time.Hour, UsedRefreshTokens: 24 * time.Hour, Revocations: time.Hour, LoginFailures: 24 * time.Hour, Every: 5 * time.Minute, Batch: 1000}
}

// Purger purges finished data in small batches, each its own short
// statement, so no lock is held for long. Replicas take turns through an
// advisory lock.
type Purger struct {
	pool   *pgxpool.Pool
	cfg    Config
	log    *slog.Logger
	purged *prometheus.CounterVec
}

// New returns the purger; its metrics are registered with reg.
func New(pool *pgxpool.Pool, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Purger {
	r := &Purger{pool: pool, cfg: cfg, log: log, purged: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_retention_purged_total", Help: "Rows deleted by the retention purge, by kind.",
	}, []string{"kind"})}
	for _, j := range r.jobs() {
		r.purged.WithLabelValues(j.table) // every series from the start
	}
	reg.MustRegister(r.purged)
	return r
}

// Run purges every cfg.Every until ctx ends.
func (r *Purger) Run(ctx context.Context) {
	loop.Every(ctx, r.cfg.Every, func(ctx context.Context) {
		if _, err := r.PurgeOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "retention purge failed", "error", err.Error())
		}
	})
}

// PurgeOnce deletes what the retention allows and returns how many rows of
// each kind it deleted. It does nothing while another replica purges.
func (r *Purger) PurgeOnce(ctx context.Context) (map[string]int64, error) {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext('retention'))").Scan(&got); err != nil || !got {
		return nil, err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext('retention'))")
	}()

	jobs := r.jobs()
	out := map[string]int64{}
	for _, j := range jobs {
		key := j.key
		if key == "" {
			key = "id"
		}
		for ctx.Err() == nil {
			tag, err := conn.Exec(ctx, fmt.Sprintf(`DELETE FROM %[1]s WHERE %[3]s IN (SELECT %[3]s FROM %[1]s
				WHERE %[2]s < now() - make_interval(secs => $1) LIMIT $2)`, j.table, j.column, key), j.keep.Seconds(), r.cfg.Batch)
			if err != nil {
				return out, fmt.Errorf("retention: %s.%s: %w", j.table, j.column, err)
			}
			out[j.table] += tag.RowsAffected()
			r.purged.WithLabelValues(j.table).Add(float64(tag.RowsAffected()))
			if tag.RowsAffected() < int64(r.cfg.Batch) {
				break
			}
		}
	}
	return out, ctx.Err()
}

// job is one purge condition.
type job struct {
	table, column string
	keep          time.Duration
	key           string // the table's key ("" for id)
}

// jobs are the purge's conditions: one statement each, each on an index of
// its own; the kind is the table.
func (r *Purger) jobs() []job {
	return []job{
		{"refresh_tokens", "rotated_at", r.cfg.UsedRefreshTokens, ""},
		{"refresh_tokens", "expires_at", r.cfg.UsedRefreshTokens, ""},
		{"sessions", "revoked_at", r.cfg.Sessions, ""},
		{"sessions", "expires_at", r.cfg.Sessions, ""},
		{"revocations", "expires_at", r.cfg.Revocations, ""},
		{"revocation_receipts", "created_at", r.cfg.Sessions, ""},
		{"login_failures", "at", r.cfg.LoginFailures, ""},
		{"client_tokens", "expires_at", 0, "token_hash"}, // an expired client token is of no use
	}
}
