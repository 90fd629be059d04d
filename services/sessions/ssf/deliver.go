package ssf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
)

// Delivery. One replica at a time delivers: the one that holds the
// transmitter's advisory lock, on a connection of its own. Its supervisor
// looks at the streams every second (at once after a change made here),
// starts the lanes of each live stream, restarts them when the stream
// changes, and removes what a deleted stream or client leaves behind.

// lockKey names the transmitter's advisory lock.
const lockKey = "ssf_transmitter"

// ackWait is how long JetStream waits for a lane's ack before it hands the
// signal out again; a lane that retries a push says it is still at work
// every ackWait/3. A lane that dies is redelivered its signal after this.
const ackWait = 10 * time.Second

// Lanes of a stream.
const (
	laneData    = "data"
	laneControl = "control"
)

// consumerName is the durable consumer of one lane of stream id.
func consumerName(id, lane string) string {
	if lane == laneControl {
		return "ssf-" + id + "-ctl"
	}
	return "ssf-" + id
}

// Run delivers the streams until ctx ends, while this replica holds the
// transmitter's lock; the other replicas wait for it.
func (t *Transmitter) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := t.lead(ctx); err != nil && ctx.Err() == nil {
			t.log.WarnContext(ctx, "shared signals delivery interrupted; trying again", "error", t.explain(err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// explain is err, for a log line, with why NATS cannot be reached when it
// cannot (natsx.Explain).
func (t *Transmitter) explain(err error) string { return natsx.Explain(t.js.Conn(), err).Error() }

// lead takes the lock, if it is free, and supervises until ctx ends or the
// lock's connection fails.
func (t *Transmitter) lead(ctx context.Context) error {
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, lockKey).Scan(&got); err != nil || !got {
		return err
	}
	defer func() {
		// The lock goes with the session; a connection back in the pool
		// must not keep it.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtext($1))`, lockKey)
	}()
	t.metrics.leader.Set(1)
	defer t.metrics.leader.Set(0)
	t.log.InfoContext(ctx, "delivering shared signals")
	s := &supervisor{t: t, running: map[string]*runningStream{}}
	defer s.stopAll()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		if err := ping(ctx, conn); err != nil {
			return fmt.Errorf("the lock's connection: %w", err)
		}
		if err := s.sync(ctx); err != nil && ctx.Err() == nil {
			t.log.WarnContext(ctx, "shared signals streams not synchronised", "error", err.Error())
		}
		if n%5 == 0 {
			s.measure(ctx)
		}
		if n%30 == 0 {
			s.dropOrphans(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-t.wake:
		}
	}
}

// ping checks the lock's connection, within a bound: a half-open
// connection must not keep a replica delivering after it lost the lock.
func ping(ctx context.Context, conn interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, `SELECT 1`)
	return err
}

// supervisor runs the lanes of the live streams.
type supervisor struct {
	t       *Transmitter
	running map[string]*runningStream
}

// runningStream is a stream whose lanes run, as of its updated_at.
type runningStream struct {
	st     *Stream
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func (s *supervisor) stopAll() {
	ids := make([]string, 0, len(s.running))
	for id := range s.running {
		ids = append(ids, id)
	}
	s.stop(ids)
}

// stop stops the lanes of streams ids, all at once (each may take up to a
// fetch's wait to notice).
func (s *supervisor) stop(ids []string) {
	for _, id := range ids {
		s.running[id].cancel()
	}
	for _, id := range ids {
		s.running[id].done.Wait()
		delete(s.running, id)
	}
}

// sync makes the running lanes those of the streams as they are now.
func (s *supervisor) sync(ctx context.Context) error {
	t := s.t
	// The streams of deleted clients go with them.
	rows, err := t.pool.Query(ctx, `DELETE FROM ssf_streams s USING api_clients c WHERE c.id = s.client_id AND c.deleted_at IS NOT NULL RETURNING s.id::text`)
	if err != nil {
		return err
	}
	gone, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, id := range gone {
		t.dropConsumers(ctx, id)
	}
	rows, err = t.pool.Query(ctx, `SELECT `+streamColumns+` FROM ssf_streams s`)
	if err != nil {
		return err
	}
	live := map[string]*Stream{}
	for rows.Next() {
		st, err := t.scanStream(rows)
		if err != nil {
			rows.Close()
			return err
		}
		live[st.ID] = st
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var changed, deleted []string
	for id, r := range s.running {
		if st, ok := live[id]; !ok {
			deleted = append(deleted, id)
		} else if !st.UpdatedAt.Equal(r.st.UpdatedAt) {
			changed = append(changed, id)
		}
	}
	s.stop(append(changed, deleted...))
	for _, id := range deleted {
		t.metrics.forget(id)
		t.dropConsumers(ctx, id)
	}
	for id, st := range live {
		if _, ok := s.running[id]; ok {
			continue
		}
		if err := t.ensureConsumers(ctx, st); err != nil {
			t.log.WarnContext(ctx, "shared signals stream not started", "stream_id", id, "error", t.explain(err))
			continue
		}
		subs, err := t.choices(ctx, id)
		if err != nil {
			return err
		}
		lctx, cancel := context.WithCancel(ctx)
		r := &runningStream{st: st, cancel: cancel}
		lanes := []string{laneControl}
		if st.Status != StatusPaused {
			lanes = append(lanes, laneData)
		}
		for _, lane := range lanes {
			l := &worker{t: t, st: st, lane: lane, b: &builder{issuer: t.cfg.Issuer, keys: t.keys, st: st, subs: subs}}
			r.done.Add(1)
			go func() { defer r.done.Done(); l.run(lctx) }()
		}
		s.running[id] = r
	}
	return nil
}

// startMargin is how long before its creation a stream's consumers start:
// the creation's time is sessiond's clock, the messages' NATS's, and a
// signal a little older than the stream is better delivered than lost.
const startMargin = 5 * time.Second

// ensureConsumers creates the durable consumers of a stream's lanes, from
// (a little before) the stream's creation on. One signal at a time may be
// unacknowledged (MaxAckPending 1): a lane that dies holding one (a crash,
// a lost lock) holds up the next until JetStream hands the first out
// again, so the stream's order survives any failure.
func (t *Transmitter) ensureConsumers(ctx context.Context, st *Stream) error {
	start := st.CreatedAt.Add(-startMargin)
	org := ""
	if st.OrgID != nil {
		org = *st.OrgID
	}
	for lane, filter := range map[string]string{laneData: events.OrgSignals(org), laneControl: events.StreamSignalsSubject(st.ID)} {
		_, err := t.js.CreateOrUpdateConsumer(ctx, events.StreamSignals, jetstream.ConsumerConfig{
			Durable: consumerName(st.ID, lane), Description: "shared signals stream " + st.ID + " (" + lane + ")",
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start, FilterSubject: filter,
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxDeliver: -1, MaxAckPending: 1,
		})
		if err != nil {
			return fmt.Errorf("consumer %s: %w", consumerName(st.ID, lane), err)
		}
	}
	return nil
}

// dropConsumers deletes the consumers of a deleted stream (best effort:
// the supervisor's sweep of orphans finds what this misses).
func (t *Transmitter) dropConsumers(ctx context.Context, id string) {
	for _, lane := range []string{laneData, laneControl} {
		err := t.js.DeleteConsumer(ctx, events.StreamSignals, consumerName(id, lane))
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
			t.log.WarnContext(ctx, "shared signals consumer not deleted; the sweep will", "consumer", consumerName(id, lane), "error", err.Error())
		}
	}
}

// dropOrphans deletes consumers of streams that no longer exist.
func (s *supervisor) dropOrphans(ctx context.Context) {
	str, err := s.t.js.Stream(ctx, events.StreamSignals)
	if err != nil {
		return
	}
	names := str.ConsumerNames(ctx)
	var orphans []string
	for name := range names.Name() {
		id, ok := strings.CutPrefix(name, "ssf-")
		if !ok {
			continue
		}
		id = strings.TrimSuffix(id, "-ctl")
		if _, running := s.running[id]; !running && validID(id) {
			orphans = append(orphans, id)
		}
	}
	for _, id := range orphans {
		var exists bool
		if err := s.t.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ssf_streams WHERE id = $1)`, id).Scan(&exists); err == nil && !exists {
			s.t.dropConsumers(ctx, id)
		}
	}
}

// measure sets each stream's queue depth and oldest undelivered age.
func (s *supervisor) measure(ctx context.Context) {
	t := s.t
	str, err := t.js.Stream(ctx, events.StreamSignals)
	if err != nil {
		return
	}
	for id, r := range s.running {
		depth, oldest := 0.0, time.Time{}
		for _, lane := range []string{laneData, laneControl} {
			c, err := str.Consumer(ctx, consumerName(id, lane))
			if err != nil {
				continue
			}
			info, err := c.Info(ctx)
			if err != nil {
				continue
			}
			n := info.NumPending + uint64(info.NumAckPending)
			depth += float64(n)
			if n == 0 {
				continue
			}
			filter := info.Config.FilterSubject
			if m, err := str.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(filter)); err == nil && (oldest.IsZero() || m.Time.Before(oldest)) {
				oldest = m.Time
			}
		}
		if r.st.Delivery.Method == MethodPoll {
			var (
				n     int
				first *time.Time
			)
			if err := t.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM ssf_poll_sets WHERE stream_id = $1`, id).Scan(&n, &first); err == nil {
				depth += float64(n)
				if first != nil && (oldest.IsZero() || first.Before(oldest)) {
					oldest = *first
				}
			}
		}
		t.metrics.depth.WithLabelValues(id).Set(depth)
		age := 0.0
		if !oldest.IsZero() {
			age = time.Since(oldest).Seconds()
		}
		t.metrics.oldest.WithLabelValues(id).Set(age)
	}
}

// worker delivers one lane of one stream, one signal at a time, in order.
type worker struct {
	t    *Transmitter
	st   *Stream
	lane string
	b    *builder
	// lastSeq is the last stream sequence done: a signal JetStream hands
	// out again after it was done (an ack lost) is only acknowledged.
	lastSeq uint64
	// paused: this lane paused its stream (its receiver failing too long).
	paused bool
	// lastProgress is when the lane last told JetStream it is still at
	// work on its signal.
	lastProgress time.Time
	// Delivery's record, written to the stream's row at most every second.
	rec       record
	recDirty  bool
	recLastAt time.Time
}

// record is what the stream's row keeps of its delivery.
type record struct {
	lastDelivery, lastErrorAt, failingSince *time.Time
	lastError                               string
}

func (l *worker) run(ctx context.Context) {
	t := l.t
	if l.lane == laneData {
		// The stream's failing clock goes on across restarts of its lane.
		l.rec.failingSince = l.st.FailingSince
	}
	defer l.flush(context.WithoutCancel(ctx), true)
	backoff := newBackoff(t.cfg.MaxBackoff)
	if l.lane == laneData && l.st.Delivery.Method == MethodPush && !l.drainPolled(ctx) {
		return
	}
	// A pull that stays open (Messages) rather than one request a signal
	// (Next): with one signal unacknowledged at a time, the next one is on
	// its way the moment the last is acknowledged.
	var msgs jetstream.MessagesContext
	defer func() {
		if msgs != nil {
			giveBack(msgs)
		}
	}()
	for ctx.Err() == nil {
		if msgs == nil {
			c, err := t.js.Consumer(ctx, events.StreamSignals, consumerName(l.st.ID, l.lane))
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				// The SIGNALS stream was made again (NATS lost its store), or
				// the consumer deleted by hand: the lane makes it anew.
				if err = t.ensureConsumers(ctx, l.st); err == nil {
					c, err = t.js.Consumer(ctx, events.StreamSignals, consumerName(l.st.ID, l.lane))
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					t.log.WarnContext(ctx, "shared signals lane waits for its consumer", "stream_id", l.st.ID, "lane", l.lane, "error", t.explain(err))
				}
				backoff.wait(ctx)
				continue
			}
			if msgs, err = c.Messages(jetstream.PullMaxMessages(1)); err != nil {
				t.log.WarnContext(ctx, "shared signals lane cannot pull", "stream_id", l.st.ID, "lane", l.lane, "error", t.explain(err))
				msgs = nil
				backoff.wait(ctx)
				continue
			}
		}
		wait, cancel := context.WithTimeout(ctx, 2*time.Second)
		msg, err := msgs.Next(jetstream.NextContext(wait))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			l.flush(ctx, false) // idle: the delivery record goes to the row
			continue
		case err != nil:
			t.log.WarnContext(ctx, "shared signals fetch failed", "stream_id", l.st.ID, "lane", l.lane, "error", t.explain(err))
			giveBack(msgs)
			msgs = nil
			backoff.wait(ctx)
			continue
		}
		backoff.reset()
		if !l.handle(ctx, msg) {
			// Stopped in the middle (a change of the stream, shutdown, a
			// pause, a failure): the signal goes back at once, to be done
			// again.
			_ = msg.Nak()
			if ctx.Err() != nil || l.paused {
				return
			}
			backoff.wait(ctx)
			continue
		}
		l.flush(ctx, false)
	}
}

// giveBack stops a lane's pull and hands back, at once, what it had
// fetched and not handled: a signal left in its buffer would otherwise
// hold the consumer (one unacknowledged at a time) until ackWait.
func giveBack(msgs jetstream.MessagesContext) {
	msgs.Drain()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		m, err := msgs.Next(jetstream.NextContext(ctx))
		cancel()
		if err != nil {
			return
		}
		_ = m.Nak()
	}
}

// handle delivers one signal; false when it stopped before it was done.
func (l *worker) handle(ctx context.Context, msg jetstream.Msg) bool {
	t := l.t
	l.lastProgress = time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		t.log.ErrorContext(ctx, "shared signals message without metadata, skipped", "stream_id", l.st.ID, "error", err.Error())
		_ = msg.Term()
		return true
	}
	if meta.Sequence.Stream <= l.lastSeq {
		_ = msg.Ack()
		return true
	}
	ev, err := events.DecodeSignal(msg.Subject(), msg.Data())
	if err != nil {
		t.log.ErrorContext(ctx, "shared signal not understood, skipped", "stream_id", l.st.ID, "subject", msg.Subject(), "error", err.Error())
		_ = msg.Term()
		return true
	}
	if l.lane == laneData && l.st.Status == StatusDisabled {
		// A disabled stream holds nothing (SSF 1.0 section 8.1.2.1), unless
		// its receiver has enabled it since this lane started: the status
		// is read again before anything is dropped.
		var status string
		if err := t.pool.QueryRow(ctx, `SELECT status FROM ssf_streams WHERE id = $1`, l.st.ID).Scan(&status); err != nil {
			return false
		}
		if status == StatusDisabled {
			t.metrics.failed.WithLabelValues(l.st.ID, "dropped").Inc()
			return l.done(msg, meta)
		}
		t.changed()
		return false // the supervisor restarts the lane with the new status
	}
	sets, err := l.b.build(ev)
	if err == nil && l.b.excluded {
		// The receiver may have added the subject back since this lane
		// started: a subject it added is never left out of what comes
		// after, so the choices are read again before anything is.
		var subs subjectChoices
		if subs, err = t.choices(ctx, l.st.ID); err == nil {
			l.b.subs = subs
			sets, err = l.b.build(ev)
		}
	}
	if err != nil {
		t.log.ErrorContext(ctx, "shared signals SETs not made", "stream_id", l.st.ID, "error", err.Error())
		return false
	}
	if len(sets) == 0 {
		return l.done(msg, meta)
	}
	if l.st.Delivery.Method == MethodPoll {
		if !l.enqueue(ctx, sets) {
			return false
		}
		return l.done(msg, meta)
	}
	for _, s := range sets {
		if !l.push(ctx, msg, s, meta.Timestamp) {
			return false
		}
	}
	return l.done(msg, meta)
}

// drainPolled pushes, in order, the SETs a stream queued while it was a
// poll stream and its receiver has not acknowledged: they were taken from
// JetStream already, and switching to push must not lose them. False when
// it stopped before the queue was empty.
func (l *worker) drainPolled(ctx context.Context) bool {
	for ctx.Err() == nil {
		rows, err := l.t.pool.Query(ctx, `SELECT seq, jti, set_jwt, created_at FROM ssf_poll_sets WHERE stream_id = $1 ORDER BY seq LIMIT 100`, l.st.ID)
		if err != nil {
			l.t.log.WarnContext(ctx, "shared signals queue not read", "stream_id", l.st.ID, "error", err.Error())
			newBackoff(l.t.cfg.MaxBackoff).wait(ctx)
			continue
		}
		type queued struct {
			seq int64
			s   set
			at  time.Time
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (queued, error) {
			var q queued
			err := r.Scan(&q.seq, &q.s.jti, &q.s.jwt, &q.at)
			return q, err
		})
		if err != nil || len(batch) == 0 {
			return err == nil
		}
		for _, q := range batch {
			if !l.push(ctx, nil, q.s, q.at) {
				return false
			}
			if _, err := l.t.pool.Exec(ctx, `DELETE FROM ssf_poll_sets WHERE stream_id = $1 AND seq = $2`, l.st.ID, q.seq); err != nil {
				return false
			}
		}
	}
	return false
}

// done acknowledges a signal whose SETs are delivered or queued.
func (l *worker) done(msg jetstream.Msg, meta *jetstream.MsgMetadata) bool {
	_ = msg.Ack()
	l.lastSeq = meta.Sequence.Stream
	return true
}

// maxQueued bounds the SETs a poll stream keeps for its receiver; past it,
// its lane stops taking signals, and JetStream holds them (for
// events.SignalsMaxAge) until the receiver acknowledges some.
const maxQueued = 100_000

// enqueue keeps a poll stream's SETs until its receiver acknowledges them.
func (l *worker) enqueue(ctx context.Context, sets []set) bool {
	for ctx.Err() == nil {
		var n int
		if err := l.t.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM ssf_poll_sets WHERE stream_id = $1 LIMIT $2) q`, l.st.ID, maxQueued).Scan(&n); err == nil && n < maxQueued {
			break
		}
		newBackoff(l.t.cfg.MaxBackoff).wait(ctx)
	}
	jtis, jwts := make([]string, len(sets)), make([]string, len(sets))
	for i, s := range sets {
		jtis[i], jwts[i] = s.jti, s.jwt
	}
	backoff := newBackoff(l.t.cfg.MaxBackoff)
	for ctx.Err() == nil {
		_, err := l.t.pool.Exec(ctx, `INSERT INTO ssf_poll_sets (stream_id, jti, set_jwt)
			SELECT $1, jti, jwt FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(jti, jwt, n) ORDER BY n
			ON CONFLICT (stream_id, jti) DO NOTHING`, l.st.ID, jtis, jwts)
		if err == nil {
			l.t.queued(l.st.ID)
			return true
		}
		if !errors.Is(err, context.Canceled) {
			l.t.log.WarnContext(ctx, "shared signals SETs not queued for polling; trying again", "stream_id", l.st.ID, "error", err.Error())
		}
		backoff.wait(ctx)
	}
	return false
}

// pushError is a receiver's RFC 8935 error answer.
type pushError struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// push delivers one SET to a push stream's receiver, trying again with
// backoff until it answers 202 or rejects the SET (400 with an RFC 8935
// error: trying again would get the same answer). A receiver failing for
// longer than Config.PauseAfter pauses the stream; false then, and when
// ctx ends.
func (l *worker) push(ctx context.Context, msg jetstream.Msg, s set, published time.Time) bool {
	t := l.t
	backoff := newBackoff(t.cfg.MaxBackoff)
	for ctx.Err() == nil {
		l.progress(msg)
		status, perr, err := l.post(ctx, s)
		now := time.Now().UTC()
		switch {
		case err == nil && status/100 == 2:
			t.metrics.delivered.WithLabelValues(l.st.ID).Inc()
			t.metrics.latency.Observe(now.Sub(published).Seconds())
			l.rec.lastDelivery, l.rec.failingSince, l.recDirty = &now, nil, true
			return true
		case err == nil && status == http.StatusBadRequest && perr.Err != "" && perr.Err != "authentication_failed" && perr.Err != "access_denied":
			// The SET itself is refused: trying again would get the same
			// answer. A receiver that does not accept the transmitter (its
			// credentials changing) is tried again like one that is down,
			// and its stream held by a pause if it lasts.
			t.metrics.failed.WithLabelValues(l.st.ID, "rejected").Inc()
			l.note(now, fmt.Sprintf("the receiver rejected SET %s: %s: %s", s.jti, perr.Err, perr.Description))
			l.rec.failingSince = nil
			t.log.WarnContext(ctx, "shared signals SET rejected by its receiver", "stream_id", l.st.ID, "jti", s.jti, "err", perr.Err, "description", perr.Description)
			return true
		}
		what := fmt.Sprintf("push to %s: HTTP %d", l.st.Delivery.EndpointURL, status)
		if err != nil {
			what = "push to " + l.st.Delivery.EndpointURL + ": " + err.Error()
		}
		t.metrics.failed.WithLabelValues(l.st.ID, "retry").Inc()
		l.note(now, what)
		if l.rec.failingSince == nil {
			l.rec.failingSince = &now
		}
		if l.lane == laneData && now.Sub(*l.rec.failingSince) > t.cfg.PauseAfter {
			reason := fmt.Sprintf("paused by the transmitter: push delivery has failed since %s (%s)", l.rec.failingSince.Format(time.RFC3339), what)
			l.flush(ctx, true)
			if err := t.TransmitterStatus(ctx, Status{StreamID: l.st.ID, Status: StatusPaused, Reason: reason}, byTransmitter); err != nil {
				t.log.WarnContext(ctx, "shared signals stream not paused", "stream_id", l.st.ID, "error", err.Error())
			} else {
				t.log.WarnContext(ctx, "shared signals stream paused", "stream_id", l.st.ID, "reason", reason)
				l.paused = true
				return false
			}
		}
		l.flush(ctx, false)
		backoff.wait(ctx)
	}
	return false
}

// progress tells JetStream, every ackWait/3, that the signal in hand is
// still being worked on (a receiver being retried, a large signal's SETs),
// so that it is not handed out again meanwhile.
func (l *worker) progress(msg jetstream.Msg) {
	if msg != nil && time.Since(l.lastProgress) > ackWait/3 {
		_ = msg.InProgress()
		l.lastProgress = time.Now()
	}
}

// note records a delivery error.
func (l *worker) note(at time.Time, what string) {
	if len(what) > 500 {
		what = what[:500]
	}
	l.rec.lastError, l.rec.lastErrorAt, l.recDirty = what, &at, true
}

// post sends one SET (RFC 8935 section 2.1).
func (l *worker) post(ctx context.Context, s set) (int, pushError, error) {
	ctx, cancel := context.WithTimeout(ctx, l.t.cfg.PushTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.st.Delivery.EndpointURL, strings.NewReader(s.jwt))
	if err != nil {
		return 0, pushError{}, err
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if h := l.st.Delivery.AuthorizationHeader; h != "" {
		req.Header.Set("Authorization", h)
	}
	resp, err := l.t.http.Do(req)
	if err != nil {
		return 0, pushError{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var perr pushError
	if resp.StatusCode == http.StatusBadRequest {
		_ = json.NewDecoder(bytes.NewReader(body)).Decode(&perr)
	}
	return resp.StatusCode, perr, nil
}

// flush writes the lane's delivery record to the stream's row, at most
// once a second unless now.
func (l *worker) flush(ctx context.Context, now bool) {
	if !l.recDirty || (!now && time.Since(l.recLastAt) < time.Second) {
		return
	}
	r := l.rec
	_, err := l.t.pool.Exec(ctx, `UPDATE ssf_streams SET last_delivery_at = GREATEST(last_delivery_at, $2), last_error = COALESCE($3, last_error),
			last_error_at = GREATEST(last_error_at, $4), failing_since = CASE WHEN $6 THEN $5 ELSE failing_since END WHERE id = $1`,
		l.st.ID, r.lastDelivery, nullable(r.lastError), r.lastErrorAt, r.failingSince, l.lane == laneData)
	if err == nil {
		l.recDirty, l.recLastAt = false, time.Now()
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// backoff waits between tries: 100 ms, doubling, up to max.
type backoff struct {
	next, max time.Duration
}

func newBackoff(max time.Duration) *backoff { return &backoff{next: 100 * time.Millisecond, max: max} }

func (b *backoff) reset() { b.next = 100 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.next = min(2*b.next, b.max)
}
