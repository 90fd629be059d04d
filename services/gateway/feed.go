package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/loop"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/telemetry"
)

// Feed keeps the blocklist current from the REVOCATIONS stream: it replays
// the stream from its first message, then applies new ones as they come. It
// confirms several times a second that it has applied everything the stream
// holds; past the staleness bound without such a confirmation the gateway
// fails closed. A stream that holds nothing (every message aged out on a
// quiet system) is confirmed at once: there is nothing to apply.
//
// The stream keeps a message for its max age, the access-token TTL plus
// leeway, so it holds exactly the live blocklist; an entry must not outlive
// its message, or a gateway started later would disagree with one that ran
// all along. The feed therefore applies an entry at most until its message
// leaves the stream (from the earlier of revoked_at and the message's
// timestamp, plus the max age), the same way in the replay and live.
type Feed struct {
	js     jetstream.JetStream
	stream string // REVOCATIONS, or a mirror of it
	// prepare, when set, runs before each start of the feed: a PoP's
	// gateway makes its mirror (EnsureMirror).
	prepare func(context.Context) error
	// snapshots, when set, holds the blocklist's snapshot (snapshotObject):
	// a starting feed loads it and replays only the tail after it, and a
	// current feed writes a new one every snapshotEvery.
	snapshots     jetstream.ObjectStore
	snapshotEvery time.Duration
	snapshotSeq   atomic.Uint64 // the sequence of the snapshot this feed started from; 0 for none
	snapshotCheck time.Time     // when the stored snapshot's age was last looked at (the feed's loop only)
	bl            *Blocklist
	maxStaleness  time.Duration
	log           *slog.Logger
	metrics       *Metrics
	// now is the wall clock: entries expire, and snapshots age, by it.
	// mono is the time elapsed since the feed was made, on the monotonic
	// clock: staleness is measured by it, so a step of the wall clock
	// (NTP, a wrong offset corrected) neither ages a current gateway nor
	// keeps a stale one deciding.
	now  func() time.Time
	mono func() time.Duration
	// Traced, each applied message is a consumer span, the child of the
	// publish whose context its headers carry; name is the gateway's.
	tracer trace.Tracer
	traced bool
	name   string

	applied     atomic.Uint64 // stream sequence of the last applied message
	streamLast  atomic.Uint64 // the stream's last sequence, as last asked
	progress    chan struct{} // signalled after each apply: a report is due
	awaited     chan struct{} // signalled after applying a message someone waits for: report at once
	maxAge      atomic.Int64  // the stream's max age (ns): the longest an entry may live
	replayed    atomic.Bool   // the messages that existed at start are applied
	lastCurrent atomic.Int64  // mono ns when the feed was last known to be current (0: never)

	mu      sync.Mutex
	pending []check

	// consume serialises the consumers' handlers: a consumer given up as
	// stalled may still deliver a message while its successor runs; gen
	// names the current one, and only it applies.
	consume sync.Mutex
	gen     uint64
	// created is the stream's creation time as the last start saw it (the
	// feed's loop only): a restart resumes after the watermark unless the
	// stream is a new one.
	created time.Time
}

// stallAfter is how long a consumer may deliver nothing while the stream
// holds messages past the watermark before the feed gives it up and starts
// a new one. nats.go's ordered consumer resets itself after a reconnect,
// but a reset that meets a stream without a leader (the server that led
// it was just killed) waits out a 10 s request timeout before it tries
// again: the gateway failed closed for 11 s in the soak.
const stallAfter = 2 * time.Second

var errConsumerStalled = errors.New("the revocation consumer delivered nothing for " + stallAfter.String() + " while the stream had more")

type check struct {
	seq uint64
	at  int64 // mono ns
}

// NewFeed returns a feed into bl.
func NewFeed(js jetstream.JetStream, bl *Blocklist, maxStaleness time.Duration, metrics *Metrics, log *slog.Logger) *Feed {
	made := time.Now()
	return &Feed{js: js, stream: events.StreamRevocations, bl: bl, maxStaleness: maxStaleness, metrics: metrics, log: log, now: time.Now,
		mono:     func() time.Duration { return time.Since(made) + 1 }, // never 0, which means never current
		progress: make(chan struct{}, 1), awaited: make(chan struct{}, 1)}
}

// Applied is the highest stream sequence applied (the watermark) and the
// stream's last sequence as last seen (never below the watermark).
func (f *Feed) Applied() (applied, streamLast uint64) {
	applied = f.applied.Load()
	return applied, max(applied, f.streamLast.Load())
}

// Progress is signalled (coalesced) whenever the watermark moves.
func (f *Feed) Progress() <-chan struct{} { return f.progress }

// Awaited is signalled (coalesced) when the watermark moves past a message
// a caller waits for (events.HeaderAwaited): its report is due at once.
func (f *Feed) Awaited() <-chan struct{} { return f.awaited }

// Replayed reports whether every revocation that existed at start has been
// applied.
func (f *Feed) Replayed() bool { return f.replayed.Load() }

// Staleness is how long ago the feed was last confirmed current.
func (f *Feed) Staleness() time.Duration {
	lc := f.lastCurrent.Load()
	if lc == 0 {
		return time.Duration(1<<63 - 1)
	}
	return f.mono() - time.Duration(lc)
}

// Current reports whether the gateway may decide: replay done and
// confirmed current within the staleness bound.
func (f *Feed) Current() bool {
	return f.replayed.Load() && f.Staleness() <= f.maxStaleness
}

// Run feeds the blocklist until ctx ends. It waits for the stream to exist,
// and starts over from the first message if the stream is recreated.
func (f *Feed) Run(ctx context.Context) error {
	loop.Restart(ctx, f.log, "revocation feed", 250*time.Millisecond, time.Second, natsx.Explaining(f.js.Conn(), f.runOnce))
	return nil
}

var errStreamRecreated = errors.New("the REVOCATIONS stream was recreated")

func (f *Feed) runOnce(ctx context.Context) error {
	if f.prepare != nil {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	stream, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	created := info.Created
	startSeq := info.State.LastSeq
	f.streamLast.Store(startSeq)
	f.setMaxAge(info.Config.MaxAge)
	start := f.mono()
	if f.applied.Load() > startSeq || !f.created.IsZero() && !created.Equal(f.created) {
		// A new stream behind our back: start again from its beginning.
		f.applied.Store(0)
	}
	f.created = created
	if m := info.Mirror; m != nil && hubHeard(m) {
		startSeq += m.Lag // what the hub holds is what the replay must reach
	}
	from := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if f.snapshots != nil && f.applied.Load() == 0 && !f.replayed.Load() {
		if seq, ok := f.loadSnapshot(ctx, info); ok {
			f.applied.Store(seq)
			from = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1}
		}
	} else if seq := f.applied.Load(); seq > 0 {
		// A restart (the consumer stalled, NATS went away): the blocklist
		// holds everything up to the watermark; go on after it.
		from = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1}
	}
	if hubHeard(info.Mirror) && (info.State.Msgs == 0 && startSeq == info.State.LastSeq || f.applied.Load() >= startSeq) {
		f.markReplayed(start)
	}

	cons, err := stream.OrderedConsumer(ctx, from)
	if err != nil {
		return err
	}
	f.consume.Lock()
	f.gen++
	gen := f.gen
	f.consume.Unlock()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			return
		}
		f.consume.Lock()
		if f.gen != gen || meta.Sequence.Stream <= f.applied.Load() {
			f.consume.Unlock() // a consumer given up, or a message applied already
			return
		}
		if f.traced {
			f.applyTraced(m, meta)
		} else {
			f.apply(m.Subject(), m.Data(), meta.Timestamp)
		}
		f.applied.Store(meta.Sequence.Stream)
		f.consume.Unlock()
		signal := f.progress
		if m.Headers().Get(events.HeaderAwaited) != "" {
			signal = f.awaited
		}
		select {
		case signal <- struct{}{}:
		default: // a report is due already; it will carry this sequence too
		}
		if !f.replayed.Load() && meta.Sequence.Stream >= startSeq {
			f.markReplayed(start)
		}
		f.confirm()
	}, jetstream.PullMaxMessages(4096), jetstream.PullHeartbeat(time.Second), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		f.log.Debug("revocation feed", "error", err.Error())
	}))
	if err != nil {
		return err
	}
	// Stopping a consumer whose reset waits on a request can take seconds;
	// its successor need not wait for that.
	defer func() { go cc.Stop() }()

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	moved, movedAt := f.applied.Load(), f.mono()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// What does the stream hold now? Once we have applied that much,
		// we were current at the time we asked.
		asked := f.mono()
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := stream.Info(ictx)
		cancel()
		if err != nil {
			continue // staleness grows; the gateway fails closed past the bound
		}
		if !info.Created.Equal(created) {
			return errStreamRecreated
		}
		// A consumer that delivers nothing while the stream holds more
		// (here, not at a hub a mirror is behind) is stuck: start another.
		if a := f.applied.Load(); a != moved {
			moved, movedAt = a, asked
		} else if info.State.LastSeq > a && info.State.Msgs > 0 && asked-movedAt > stallAfter {
			f.log.Warn("revocation feed stalled; starting a new consumer", "applied", a, "stream_last_seq", info.State.LastSeq)
			return errConsumerStalled
		}
		f.setMaxAge(info.Config.MaxAge)
		f.streamLast.Store(info.State.LastSeq)
		// Every message is needed up to the last sequence, unless the stream
		// holds none: then there is nothing to apply, and the messages that
		// existed at start have aged out (they could only have been expired
		// entries).
		need := info.State.LastSeq
		if info.State.Msgs == 0 {
			need = 0
		}
		if m := info.Mirror; m != nil {
			// A mirror in a point of presence: current is what the hub holds.
			// The mirror keeps the hub's sequences, is Lag messages behind
			// it, and last heard from it (a message, or its heartbeat every
			// second) Active ago: that is when the mirror was the hub. A
			// mirror that never heard from the hub, or has lost it, confirms
			// nothing, and the gateway fails closed past its bound, as one
			// cut off from NATS does.
			if m.Error != nil || m.Active < 0 {
				continue
			}
			asked -= m.Active
			need = max(need, info.State.LastSeq+m.Lag)
		}
		if !f.replayed.Load() && hubHeard(info.Mirror) && (info.State.Msgs == 0 && (info.Mirror == nil || info.Mirror.Lag == 0) || info.State.FirstSeq > startSeq) {
			f.markReplayed(start)
		}
		f.mu.Lock()
		f.pending = append(f.pending, check{seq: need, at: int64(asked)})
		if len(f.pending) > 64 { // a stalled feed: keep the newest checks
			f.pending = f.pending[len(f.pending)-64:]
		}
		f.mu.Unlock()
		f.confirm()
		f.metrics.staleness.Set(min(f.Staleness(), 1<<40).Seconds())
		f.maybeSnapshot(ctx, info)
	}
}

// EnsureMirror returns the preparation of a PoP gateway's feed: the mirror
// name in the leaf's domain (leaf) of the hub's REVOCATIONS (hub), made if
// it is missing, with the hub's max age, so that it holds what the hub
// holds. A mirror that exists is left as it is, so a PoP cut off from the
// hub still starts on it (and fails closed until the hub is heard again).
func EnsureMirror(leaf, hub jetstream.JetStream, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := leaf.Stream(ctx, name); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("the mirror %s: %w", name, err)
		}
		src, err := hub.Stream(ctx, events.StreamRevocations)
		if err != nil {
			return fmt.Errorf("the hub's %s: %w", events.StreamRevocations, err)
		}
		hubDomain := hub.Options().Domain
		_, err = leaf.CreateStream(ctx, jetstream.StreamConfig{Name: name, MaxAge: src.CachedInfo().Config.MaxAge,
			Description: "mirror of the hub's " + events.StreamRevocations + " (domain " + hubDomain + ")",
			Mirror:      &jetstream.StreamSource{Name: events.StreamRevocations, Domain: hubDomain}})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("make the mirror %s: %w", name, err)
		}
		return nil
	}
}

// hubHeard reports whether a mirror (nil: none, the gateway follows the
// hub's stream itself) is in touch with the hub it copies: a mirror that
// never heard from it, or has lost it, holds nothing a gateway may call
// current.
func hubHeard(m *jetstream.StreamSourceInfo) bool {
	return m == nil || (m.Error == nil && m.Active >= 0)
}

func (f *Feed) markReplayed(start time.Duration) {
	if f.replayed.CompareAndSwap(false, true) {
		now := f.mono()
		f.lastCurrent.Store(int64(now))
		f.metrics.replaySeconds.Set((now - start).Seconds())
		f.log.Info("revocation feed replayed", "entries", f.bl.Len(), "seconds", (now - start).Seconds())
	}
}

// confirm moves lastCurrent forward for every check whose sequence has been
// applied.
func (f *Feed) confirm() {
	applied := f.applied.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	i := 0
	for ; i < len(f.pending) && f.pending[i].seq <= applied; i++ {
		if f.replayed.Load() && f.pending[i].at > f.lastCurrent.Load() {
			f.lastCurrent.Store(f.pending[i].at)
		}
	}
	f.pending = f.pending[i:]
}

// fallbackMaxAge bounds entries when the stream keeps messages for ever
// (not how sessiond creates it): a day, far beyond any access token.
const fallbackMaxAge = 24 * time.Hour

func (f *Feed) setMaxAge(d time.Duration) {
	if d <= 0 {
		if f.maxAge.Swap(int64(fallbackMaxAge)) != int64(fallbackMaxAge) {
			f.log.Warn("the REVOCATIONS stream has no max age; entries are kept at most a day", "bound", fallbackMaxAge.String())
		}
		return
	}
	f.maxAge.Store(int64(d))
}

// bound clamps an event's expires_at to when its message leaves the stream:
// the earlier of revoked_at and the message's timestamp, plus the stream's
// max age. It reports whether it clamped.
func bound(ev events.Event, published time.Time, maxAge time.Duration) (events.Event, bool) {
	r, ok := ev.(events.Revocation)
	if !ok {
		return ev, false
	}
	revokedAt, expiresAt := r.Span()
	limit := revokedAt
	if published.Before(limit) {
		limit = published
	}
	if limit = limit.Add(maxAge); expiresAt.After(limit) {
		return r.Until(limit), true
	}
	return ev, false
}

// applyTraced applies m inside its span.
func (f *Feed) applyTraced(m jetstream.Msg, meta *jetstream.MsgMetadata) {
	ctx := telemetry.Propagator.Extract(context.Background(), telemetry.NATSHeader(m.Headers()))
	_, span := f.tracer.Start(ctx, "apply "+m.Subject(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(m.Subject()),
			attribute.Int64("nats.stream.sequence", int64(meta.Sequence.Stream)), attribute.String("gateway.name", f.name),
			attribute.Bool("gateway.replaying", !f.replayed.Load())))
	f.apply(m.Subject(), m.Data(), meta.Timestamp)
	span.End()
}

func (f *Feed) apply(subject string, data []byte, published time.Time) {
	ev, err := events.Decode(subject, data)
	if err != nil {
		f.metrics.feedErrors.Inc()
		f.log.Warn("revocation feed: undecodable event skipped", "subject", subject, "error", err.Error())
		return
	}
	ev, clamped := bound(ev, published, time.Duration(f.maxAge.Load()))
	if clamped {
		f.metrics.clamped.Inc()
		f.log.Warn("revocation feed: expires_at beyond the longest token life; applied until its message leaves the stream",
			"subject", subject, "event_id", ev.ID())
	}
	now := f.now()
	if f.bl.Apply(ev, now) {
		f.metrics.applied.Inc()
		if !f.replayed.Load() {
			f.metrics.blocklistSize.Set(float64(f.bl.Len()))
			return // the lag of replayed history means nothing
		}
		if r, ok := ev.(events.Revocation); ok {
			revokedAt, _ := r.Span()
			f.metrics.lag.Observe(now.Sub(revokedAt).Seconds())
		}
	}
	f.metrics.blocklistSize.Set(float64(f.bl.Len()))
}

// The snapshot object and its headers: the stream sequence it covers (every
// message up to it is in it, and perhaps a few after), the stream's
// creation (a snapshot of another stream is not this one's), and when it
// was taken.
const (
	snapshotObject  = "blocklist"
	headerSeq       = "Revocations-Seq"
	headerCreated   = "Revocations-Created"
	headerTakenAt   = "Taken-At"
	SnapshotsBucket = "REVOCATIONS_SNAPSHOTS"
)

// loadSnapshot loads the blocklist's snapshot, if there is one this stream
// can start from, and returns the sequence it covers. A missing snapshot,
// one of another stream, one older than the stream's max age (everything
// in it has expired), one whose checksum or content is wrong: the feed
// replays the whole stream instead, never loads a wrong blocklist.
func (f *Feed) loadSnapshot(ctx context.Context, info *jetstream.StreamInfo) (uint64, bool) {
	start := f.now()
	obj, err := f.snapshots.Get(ctx, snapshotObject)
	if err != nil {
		if !errors.Is(err, jetstream.ErrObjectNotFound) {
			f.log.Warn("blocklist snapshot not read; replaying the whole stream", "error", err.Error())
		}
		return 0, false
	}
	defer obj.Close()
	meta, err := obj.Info()
	if err != nil {
		return 0, false
	}
	seq, err1 := strconv.ParseUint(meta.Headers.Get(headerSeq), 10, 64)
	created, err2 := time.Parse(time.RFC3339Nano, meta.Headers.Get(headerCreated))
	taken, err3 := time.Parse(time.RFC3339Nano, meta.Headers.Get(headerTakenAt))
	switch {
	case err1 != nil || err2 != nil || err3 != nil:
		f.log.Warn("blocklist snapshot without its stamps; replaying the whole stream")
		return 0, false
	case !created.Equal(info.Created):
		f.log.Info("blocklist snapshot of an earlier stream; replaying the whole stream")
		return 0, false
	case seq > info.State.LastSeq:
		f.log.Warn("blocklist snapshot ahead of the stream; replaying the whole stream", "snapshot_seq", seq, "stream_last_seq", info.State.LastSeq)
		return 0, false
	case info.Config.MaxAge > 0 && f.now().Sub(taken) > info.Config.MaxAge:
		f.log.Info("blocklist snapshot older than the stream's max age; replaying the whole stream", "taken_at", taken)
		return 0, false
	}
	// Read into a blocklist of its own as it streams in (the object store
	// checks its SHA-256 digest at the end), taken over only when all of it
	// has read well.
	tmp, n, err := loadSnapshot(obj, f.now())
	if err != nil {
		f.log.Warn("blocklist snapshot corrupt or unreadable (its checksum, or the store); replaying the whole stream", "error", err.Error())
		return 0, false
	}
	if f.bl.Len() != 0 || f.applied.Load() != 0 {
		return 0, false // not a cold start after all: the snapshot is not needed
	}
	f.bl.adopt(tmp)
	f.snapshotSeq.Store(seq)
	f.log.Info("blocklist snapshot loaded", "entries", n, "seq", seq, "bytes", meta.Size, "seconds", f.now().Sub(start).Seconds())
	return seq, true
}

// maybeSnapshot writes a new snapshot when this feed is current and the
// stored one is older than snapshotEvery (every gateway may; the stored
// one's age keeps them from all writing at once).
func (f *Feed) maybeSnapshot(ctx context.Context, info *jetstream.StreamInfo) {
	if f.snapshots == nil || f.snapshotEvery <= 0 || !f.Current() || f.now().Sub(f.snapshotCheck) < f.snapshotEvery/4 {
		return
	}
	f.snapshotCheck = f.now()
	if meta, err := f.snapshots.GetInfo(ctx, snapshotObject); err == nil && f.now().Sub(meta.ModTime) < f.snapshotEvery {
		return
	} else if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return
	}
	seq := f.applied.Load() // read first: the entries written cover at least it
	now := f.now()
	var buf bytes.Buffer
	if err := f.bl.WriteSnapshot(&buf, now); err != nil {
		return
	}
	h := nats.Header{}
	h.Set(headerSeq, strconv.FormatUint(seq, 10))
	h.Set(headerCreated, info.Created.Format(time.RFC3339Nano))
	h.Set(headerTakenAt, now.UTC().Format(time.RFC3339Nano))
	if _, err := f.snapshots.Put(ctx, jetstream.ObjectMeta{Name: snapshotObject, Headers: h}, &buf); err != nil {
		f.log.Warn("blocklist snapshot not written", "error", err.Error())
		return
	}
	f.log.Debug("blocklist snapshot written", "seq", seq, "entries", f.bl.Len())
}
