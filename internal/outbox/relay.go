// Package outbox relays the transactional outbox to NATS JetStream. Rows are
// written by the services in the same transaction as the state change; the
// relay publishes them with Nats-Msg-Id = event_id, waits for JetStream's
// ack, and only then marks them sent. A crash between publish and mark-sent
// republishes the row, and JetStream's duplicate window drops the copy.
//
// Rows reach JetStream by two paths. The fast path: the process that
// committed them hands them to its relay (Committed), which publishes them
// at once, with no database round trip between the commit and the publish;
// this is what puts a revocation on the gateways within a millisecond or so
// of its commit. The sweep: the relay's own loop reads unsent rows, woken by
// NOTIFY (from processes without a relay), by a fast-path failure, or by its
// poll; it covers whatever the fast path did not deliver (a crash after the
// commit, NATS away). A row both paths publish is dropped by JetStream as a
// duplicate; every event is safe to apply twice and in any order anyway.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/loop"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/telemetry"
)

// Channel is the LISTEN/NOTIFY channel that wakes the relay.
const Channel = "outbox"

// Publisher is the part of JetStream the relay needs.
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	PublishAsyncPending() int
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
	// OnAck, when set, hears every row JetStream acknowledges: the row, the
	// stream sequence it is stored at, and when its transaction committed
	// (the fast path) or the row was written (the sweep). Revocation
	// receipts are built from it. It runs on the relay's goroutines and
	// must not block.
	OnAck func(m Message, seq uint64, committedAt time.Time)
	// Subjects are the subjects the relay will publish (a UUID segment may
	// stand for any): their series of outbox_published_total exist from the
	// start.
	Subjects []string
	// Tracer, when set to a provider that records, makes each publish a
	// producer span, the child of the trace its row was written in, ended
	// at JetStream's ack; its context travels in the message's headers
	// (W3C traceparent), to the gateways that apply it.
	Tracer trace.TracerProvider
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
	tracer  trace.Tracer
	traced  bool // tracer records: spans are made (not even a no-op one otherwise)

	wake     chan struct{}  // a sweep is wanted
	inflight chan published // fast-path publishes awaiting their acks
	healthy  atomic.Bool    // the last attempt to reach JetStream succeeded

	mu     sync.Mutex
	flying map[string]struct{} // event ids the fast path publishes now; the sweep leaves them alone
}

// Message is an outbox row whose transaction has just committed.
type Message struct {
	EventID string
	Subject string
	Payload []byte
	// Receipt is the revocation receipt the row belongs to ("" for none),
	// and ReceiptEvents how many rows that receipt has in all, or 0 while
	// that is not known yet (a receipt committed in batches, before its
	// last batch).
	Receipt       string
	ReceiptEvents int
	// Awaited: a caller waits for the receipt, and the message asks the
	// gateways to report at once after applying it (events.HeaderAwaited).
	Awaited bool
	// Trace is the W3C traceparent of the request that wrote the row ("":
	// none), kept in the row for the sweep (the fast path has the
	// request's context itself).
	Trace string

	seq uint64 // the stream sequence JetStream acknowledged it at
}

// published is a fast-path batch and its ack futures (nil where the publish
// failed at once).
type published struct {
	msgs    []Message
	futures []jetstream.PubAckFuture
	spans   []trace.Span // nil unless traced
	at      time.Time    // when the rows were handed over, about their commit
}

// fastPathQueue bounds the fast-path batches awaiting their acks, and
// fastPathPending the publishes JetStream has not acknowledged yet; beyond
// either, rows wait for the sweep instead (a publish beyond JetStream's own
// limit would stall the committing request).
const (
	fastPathQueue   = 1024
	fastPathPending = 2048
)

// New returns a relay; its metrics are registered with reg.
func New(pool *pgxpool.Pool, js Publisher, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Relay {
	r := &Relay{pool: pool, js: js, cfg: cfg, log: log, metrics: newMetrics(reg, pool, cfg.Subjects),
		tracer: telemetry.Tracer(cfg.Tracer), traced: telemetry.Records(cfg.Tracer),
		wake: make(chan struct{}, 1), inflight: make(chan published, fastPathQueue), flying: map[string]struct{}{}}
	r.healthy.Store(true)
	return r
}

// Committed publishes rows whose transaction has just committed, at once,
// in the caller's goroutine: publishing only queues the message on the NATS
// connection, and the acks are awaited by another goroutine, which marks the
// rows sent. It never blocks on the network and never fails: rows it does
// not publish now (JetStream unreachable at the last attempt, too many acks
// outstanding) are left to the sweep, which it wakes.
func (r *Relay) Committed(ctx context.Context, msgs []Message) {
	if len(msgs) == 0 {
		return
	}
	if !r.healthy.Load() || r.js.PublishAsyncPending()+len(msgs) > fastPathPending {
		signal(r.wake)
		return
	}
	p := published{msgs: msgs, futures: make([]jetstream.PubAckFuture, len(msgs)), at: time.Now()}
	if r.traced {
		p.spans = make([]trace.Span, len(msgs))
	}
	r.fly(msgs...)
	awaited := lastAwaited(len(msgs), func(i int) (string, bool) { return msgs[i].Receipt, msgs[i].Awaited })
	for i, m := range msgs {
		msg := natsMsg(m.Subject, m.Payload, awaited(i))
		if r.traced {
			p.spans[i] = r.traceMsg(ctx, msg, m.EventID, m.Trace, "fast")
		}
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.EventID))
		if err != nil {
			endSpan(p.spans, i, 0, err.Error())
			r.land(m)
			r.fastPathFailed(ctx, err.Error(), 1)
			continue
		}
		p.futures[i] = f
	}
	select {
	case r.inflight <- p:
	default: // the acks go unread: the rows stay unsent and the sweep marks them
		endSpans(p.spans, "acks not awaited: left to the sweep")
		r.land(msgs...)
		signal(r.wake)
	}
}

// fly and land add and remove rows from the fast path's in-flight set.
func (r *Relay) fly(msgs ...Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.flying[m.EventID] = struct{}{}
	}
}

func (r *Relay) land(msgs ...Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		delete(r.flying, m.EventID)
	}
}

// inFlight returns the event ids the fast path publishes now.
func (r *Relay) inFlight() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.flying))
	for id := range r.flying {
		ids = append(ids, id)
	}
	return ids
}

// Run relays until ctx ends. Several relays (one per sessiond replica) may
// run on one outbox: FOR UPDATE SKIP LOCKED gives each its own rows.
func (r *Relay) Run(ctx context.Context) error {
	go r.listen(ctx)
	go r.markFresh(ctx)
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
		case <-r.wake:
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
			r.healthy.Store(false)
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
		if prepared {
			r.healthy.Store(true)
		}
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
// notification; it reconnects when the connection breaks (the poll covers
// the gap).
func (r *Relay) listen(ctx context.Context) {
	loop.Restart(ctx, r.log, "outbox relay: LISTEN connection (polling until it is back)", time.Second, 5*time.Second, r.listenOnce)
}

func (r *Relay) listenOnce(ctx context.Context) error {
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
	signal(r.wake)
	for {
		if _, err := c.WaitForNotification(ctx); err != nil {
			return err
		}
		signal(r.wake)
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
	receipt string
	events  int // of its receipt
	awaited bool
	trace   string // traceparent
}

// lastAwaited says which of n messages published together carry the
// awaited header: of each awaited receipt's messages, only the last. A
// gateway reports at once after applying a message with the header; the
// report after the last covers the others, and one report per message would
// be a storm for a receipt of thousands (a bulk revocation).
func lastAwaited(n int, of func(i int) (receipt string, awaited bool)) func(i int) bool {
	if n == 1 {
		_, a := of(0)
		return func(int) bool { return a }
	}
	last := map[string]int{}
	for i := range n {
		if receipt, a := of(i); a {
			last[receipt] = i
		}
	}
	return func(i int) bool {
		receipt, a := of(i)
		return a && last[receipt] == i
	}
}

// traceMsg starts the producer span of msg, the child of ctx's span or, when
// ctx has none (the sweep), of the row's traceparent, and puts its context in
// msg's headers.
func (r *Relay) traceMsg(ctx context.Context, msg *nats.Msg, eventID, traceparent, path string) trace.Span {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = telemetry.WithTraceparent(ctx, traceparent)
	}
	ctx, span := r.tracer.Start(ctx, "publish "+subjectKind(msg.Subject), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(msg.Subject),
			semconv.MessagingMessageID(eventID), attribute.String("outbox.path", path)))
	telemetry.Propagator.Inject(ctx, telemetry.NATSHeader(msg.Header))
	return span
}

// endSpan ends spans[i] (if traced) at its ack (seq) or its failure (why).
// A span ends once: a later call on it changes nothing (OpenTelemetry
// ignores what is done to an ended span), so a batch's spans may all be
// ended "not acknowledged" at the end, whichever ended before.
func endSpan(spans []trace.Span, i int, seq uint64, why string) {
	if spans == nil || spans[i] == nil {
		return
	}
	if why != "" {
		spans[i].SetStatus(codes.Error, why)
	} else {
		spans[i].SetAttributes(attribute.Int64("nats.stream.sequence", int64(seq)))
	}
	spans[i].End()
}

// endSpans ends every span of a batch not ended already as failed (why).
func endSpans(spans []trace.Span, why string) {
	for i := range spans {
		endSpan(spans, i, 0, why)
	}
}

// natsMsg is the message that publishes an outbox row.
func natsMsg(subject string, payload []byte, awaited bool) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = payload
	if awaited {
		msg.Header.Set(events.HeaderAwaited, "1")
	}
	return msg
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
		// Rows the fast path is publishing are its own to mark; taking them
		// would publish them twice (harmless, but not free).
		q.Queue(`SELECT o.id, o.event_id, o.subject, o.payload, o.created_at, COALESCE(o.receipt_id::text, ''), COALESCE(CASE WHEN rr.complete THEN rr.events END, 0), COALESCE(rr.awaited, false), COALESCE(o.traceparent, '')
			FROM outbox o LEFT JOIN revocation_receipts rr ON rr.id = o.receipt_id
			WHERE o.sent_at IS NULL AND o.event_id <> ALL($2::uuid[]) ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED`, r.cfg.Batch, r.inFlight())
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
			err := cr.Scan(&x.id, &x.eventID, &x.subject, &x.payload, &x.created, &x.receipt, &x.events, &x.awaited, &x.trace)
			return x, err
		})
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil || len(batch) == 0 {
			return err
		}
		taken = len(batch)
		sent, seqs, failed, errMsg := r.publish(ctx, batch)
		if len(failed) > 0 {
			pubErr = errors.New(errMsg)
		}
		b := &pgx.Batch{}
		if len(sent) > 0 {
			b.Queue(`UPDATE outbox o SET sent_at = clock_timestamp(), stream_seq = x.seq, attempts = attempts + 1, last_error = NULL
				FROM unnest($1::bigint[], $2::bigint[]) AS x(id, seq) WHERE o.id = x.id`, sent, seqs)
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

// publish sends the batch asynchronously and waits for every ack; it
// returns the rows acked with their stream sequences, and the failed ones.
func (r *Relay) publish(ctx context.Context, batch []row) (sent, seqs, failed []int64, errMsg string) {
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, len(batch))
	var spans []trace.Span
	if r.traced {
		spans = make([]trace.Span, len(batch))
		// Every span ends, whatever ends the wait: the ack, the row's
		// failure, or the batch given up (see endSpan).
		defer endSpans(spans, "not acknowledged")
	}
	awaited := lastAwaited(len(batch), func(i int) (string, bool) { return batch[i].receipt, batch[i].awaited })
	for i, x := range batch {
		msg := natsMsg(x.subject, x.payload, awaited(i))
		if r.traced {
			spans[i] = r.traceMsg(ctx, msg, x.eventID, x.trace, "sweep")
		}
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(x.eventID))
		if err != nil {
			endSpan(spans, i, 0, err.Error())
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
		case ack := <-f.Ok():
			x := batch[i]
			sent, seqs = append(sent, x.id), append(seqs, int64(ack.Sequence))
			r.metrics.acked(x.subject, ack.Duplicate, time.Since(x.created))
			endSpan(spans, i, ack.Sequence, "")
			if r.cfg.OnAck != nil {
				r.cfg.OnAck(Message{EventID: x.eventID, Subject: x.subject, Payload: x.payload, Receipt: x.receipt, ReceiptEvents: x.events, Awaited: x.awaited, Trace: x.trace}, ack.Sequence, x.created)
			}
		case err := <-f.Err():
			errMsg = err.Error()
			endSpan(spans, i, 0, errMsg)
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
	return sent, seqs, failed, errMsg
}

// markFresh waits for the fast path's acks and marks the acked rows sent,
// one UPDATE for all that are acked by then. Rows not acked in time stay
// unsent, for the sweep.
func (r *Relay) markFresh(ctx context.Context) {
	var sent []Message
	for {
		var p published
		if len(sent) == 0 {
			select {
			case <-ctx.Done():
				return
			case p = <-r.inflight:
			}
		} else {
			select {
			case p = <-r.inflight:
			default:
				r.markSent(ctx, sent)
				r.land(sent...)
				sent = sent[:0]
				continue
			}
		}
		sent = r.awaitAcks(ctx, p, sent)
	}
}

// awaitAcks appends to sent the rows of p that JetStream acknowledged; the
// others land at once, for the sweep.
func (r *Relay) awaitAcks(ctx context.Context, p published, sent []Message) []Message {
	timeout := time.NewTimer(r.cfg.AckTimeout - time.Since(p.at))
	defer timeout.Stop()
	defer endSpans(p.spans, "not acknowledged: left to the sweep")
	failed, why := 0, ""
	for i, f := range p.futures {
		if f == nil {
			continue // landed when its publish failed
		}
		select {
		case ack := <-f.Ok():
			m := p.msgs[i]
			m.seq = ack.Sequence
			sent = append(sent, m)
			r.metrics.acked(m.Subject, ack.Duplicate, time.Since(p.at))
			endSpan(p.spans, i, ack.Sequence, "")
			if r.cfg.OnAck != nil {
				r.cfg.OnAck(m, ack.Sequence, p.at)
			}
		case err := <-f.Err():
			failed, why = failed+1, err.Error()
			endSpan(p.spans, i, 0, why)
			r.land(p.msgs[i])
		case <-timeout.C:
			r.land(p.msgs[i:]...)
			r.fastPathFailed(ctx, "timed out waiting for JetStream acks", len(p.futures)-i)
			return sent
		case <-ctx.Done():
			return sent
		}
	}
	if failed > 0 {
		r.fastPathFailed(ctx, why, failed)
	}
	return sent
}

// fastPathFailed leaves n rows to the sweep, and every new row too until the
// sweep reaches JetStream again.
func (r *Relay) fastPathFailed(ctx context.Context, why string, n int) {
	r.metrics.errors.WithLabelValues("publish").Add(float64(n))
	if r.healthy.Swap(false) {
		r.log.WarnContext(ctx, "outbox relay: fast-path publish failed; the sweep takes over", "error", why)
	}
	signal(r.wake)
}

// markSent marks fast-path rows sent. Like the sweep's mark, it need not
// wait for the disk: a lost mark only means a duplicate publish, which
// JetStream drops.
func (r *Relay) markSent(ctx context.Context, msgs []Message) {
	eventIDs, seqs := make([]string, len(msgs)), make([]int64, len(msgs))
	for i, m := range msgs {
		eventIDs[i], seqs[i] = m.EventID, int64(m.seq)
	}
	if err := postgres.ExecUnsynced(ctx, r.pool, `UPDATE outbox o SET sent_at = clock_timestamp(), stream_seq = x.seq, attempts = attempts + 1, last_error = NULL
		FROM unnest($1::uuid[], $2::bigint[]) AS x(id, seq) WHERE o.event_id = x.id AND o.sent_at IS NULL`, eventIDs, seqs); err != nil && ctx.Err() == nil {
		// The rows stay unsent; the sweep publishes them again and marks them.
		r.metrics.errors.WithLabelValues("database").Inc()
		r.log.WarnContext(ctx, "outbox relay: marking fast-path rows sent failed; the sweep will republish them", "error", err.Error())
		signal(r.wake)
	}
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
