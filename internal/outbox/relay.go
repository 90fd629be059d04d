// Package outbox relays the transactional outbox to NATS JetStream. Rows are
// written by the services in the same transaction as the state change; the
// relay publishes them with Nats-Msg-Id = event_id, waits for JetStream's
// ack, and only then marks them sent. A crash between publish and mark-sent
// republishes the row, and JetStream's duplicate window drops the copy.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Channel is the LISTEN/NOTIFY channel that wakes the relay.
const Channel = "outbox"

// Publisher is the part of JetStream the relay needs.
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Config tunes the relay.
type Config struct {
	// Batch is the most rows published per transaction.
	Batch int
	// Poll is the fallback interval when no notification arrives.
	Poll time.Duration
	// AckTimeout bounds the wait for JetStream's acks of one batch.
	AckTimeout time.Duration
	// Retention is how long sent rows are kept before they are pruned.
	Retention time.Duration
	// MaxBackoff caps the wait between attempts while NATS is away.
	MaxBackoff time.Duration
	// Prepare runs before the first publish and after failures (it creates
	// the streams); nil for none.
	Prepare func(context.Context) error
}

// DefaultConfig is the production configuration.
func DefaultConfig() Config {
	return Config{Batch: 256, Poll: time.Second, AckTimeout: 5 * time.Second, Retention: 24 * time.Hour, MaxBackoff: time.Second}
}

// Relay publishes outbox rows.
type Relay struct {
	pool    *pgxpool.Pool
	js      Publisher
	cfg     Config
	log     *slog.Logger
	metrics *metrics
}

// New returns a relay; its metrics are registered with reg.
func New(pool *pgxpool.Pool, js Publisher, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Relay {
	return &Relay{pool: pool, js: js, cfg: cfg, log: log, metrics: newMetrics(reg, pool)}
}

// Run relays until ctx ends. Several relays (one per sessiond replica) may
// run on one outbox: FOR UPDATE SKIP LOCKED gives each its own rows.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	go r.listen(ctx, wake)
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	poll := time.NewTimer(0)
	defer poll.Stop()
	prepared := r.cfg.Prepare == nil
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		case <-prune.C:
			r.prune(ctx)
			continue
		}
		var err error
		if !prepared {
			if err = r.cfg.Prepare(ctx); err == nil {
				prepared = true
			}
		}
		for err == nil {
			var n int
			n, err = r.RelayOnce(ctx)
			if n < r.cfg.Batch {
				break
			}
		}
		if err != nil && ctx.Err() == nil {
			failures++
			prepared = r.cfg.Prepare == nil
			wait := backoff(failures, r.cfg.MaxBackoff)
			r.log.WarnContext(ctx, "outbox relay: publish failed; will retry", "error", err.Error(), "retry_in_ms", wait.Milliseconds())
			poll.Reset(wait)
			// Notifications must not shortcut the backoff while NATS is away.
			select {
			case <-ctx.Done():
				return nil
			case <-poll.C:
			}
			poll.Reset(0)
			continue
		}
		failures = 0
		poll.Reset(r.cfg.Poll)
	}
}

func backoff(failures int, max time.Duration) time.Duration {
	d := 50 * time.Millisecond << min(failures, 10)
	if d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

// listen holds one connection in LISTEN outbox and signals wake on every
// notification; it reconnects when the connection breaks.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		r.log.WarnContext(ctx, "outbox relay: LISTEN connection lost; polling until it is back", "error", fmt.Sprint(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// This connection stays in LISTEN state: it never goes back to the pool.
	c := conn.Hijack()
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	// Rows committed while nobody listened are picked up now.
	signal(wake)
	for {
		if _, err := c.WaitForNotification(ctx); err != nil {
			return err
		}
		signal(wake)
	}
}

func signal(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

type row struct {
	id      int64
	eventID string
	subject string
	payload []byte
	created time.Time
}

// RelayOnce publishes one batch of unsent rows and marks the acked ones
// sent. It returns how many rows it took.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	var taken int
	var pubErr error
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		// Marking rows sent need not wait for the disk: if the mark is lost
		// in a crash the rows are published again, and JetStream drops the
		// duplicates. This keeps an fsync off the path of the next batch.
		// One round trip for both statements.
		q := &pgx.Batch{}
		q.Queue("SET LOCAL synchronous_commit TO off")
		q.Queue(`SELECT id, event_id, subject, payload, created_at FROM outbox
			WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, r.cfg.Batch)
		br := tx.SendBatch(ctx, q)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
			var x row
			err := cr.Scan(&x.id, &x.eventID, &x.subject, &x.payload, &x.created)
			return x, err
		})
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil || len(batch) == 0 {
			return err
		}
		taken = len(batch)
		sent, failed, errMsg := r.publish(ctx, batch)
		if len(failed) > 0 {
			pubErr = errors.New(errMsg)
		}
		b := &pgx.Batch{}
		if len(sent) > 0 {
			b.Queue(`UPDATE outbox SET sent_at = clock_timestamp(), attempts = attempts + 1, last_error = NULL WHERE id = ANY($1)`, sent)
		}
		if len(failed) > 0 {
			b.Queue(`UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)`, failed, errMsg)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		r.metrics.errors.WithLabelValues("database").Inc()
		return taken, fmt.Errorf("outbox: %w", err)
	}
	return taken, pubErr
}

// publish sends the batch asynchronously and waits for every ack.
func (r *Relay) publish(ctx context.Context, batch []row) (sent, failed []int64, errMsg string) {
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, len(batch))
	for i, x := range batch {
		msg := nats.NewMsg(x.subject)
		msg.Data = x.payload
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(x.eventID))
		if err != nil {
			errMsg = err.Error()
			failed = append(failed, x.id)
			continue
		}
		futures[i] = f
	}
	timeout := time.NewTimer(r.cfg.AckTimeout)
	defer timeout.Stop()
	// abandon marks every row from i on as failed: it stays unsent and is
	// published again later, and JetStream drops the duplicates.
	abandon := func(i int, why string) {
		for j := i; j < len(futures); j++ {
			if futures[j] != nil {
				failed = append(failed, batch[j].id)
			}
		}
		errMsg = why
	}
wait:
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			sent = append(sent, batch[i].id)
			r.metrics.published.WithLabelValues(batch[i].subject).Inc()
			r.metrics.lag.Observe(time.Since(batch[i].created).Seconds())
		case err := <-f.Err():
			errMsg = err.Error()
			failed = append(failed, batch[i].id)
		case <-timeout.C:
			abandon(i, "timed out waiting for JetStream acks")
			break wait
		case <-ctx.Done():
			abandon(i, ctx.Err().Error())
			break wait
		}
	}
	if len(failed) > 0 {
		r.metrics.errors.WithLabelValues("publish").Add(float64(len(failed)))
	}
	r.metrics.publishLatency.Observe(time.Since(start).Seconds())
	return sent, failed, errMsg
}

// prune deletes sent rows older than the retention, in small batches so no
// lock is held for long.
func (r *Relay) prune(ctx context.Context) {
	for ctx.Err() == nil {
		tag, err := r.pool.Exec(ctx, `DELETE FROM outbox WHERE id IN (
			SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => $1) ORDER BY sent_at LIMIT 1000)`, r.cfg.Retention.Seconds())
		if err != nil {
			r.log.WarnContext(ctx, "outbox relay: prune failed", "error", err.Error())
			return
		}
		if tag.RowsAffected() < 1000 {
			return
		}
	}
}
