package receipts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/loop"
	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
)

// Statuses of a receipt.
const (
	Committed = "committed" // durable in PostgreSQL
	Published = "published" // every event acknowledged by JetStream
	Enforced  = "enforced"  // applied by every gateway live at its publish
)

// MaxWait bounds Prefer: wait=N.
const MaxWait = 10 * time.Second

// Receipt is a revocation receipt as the API shows it.
type Receipt struct {
	ID          string     `json:"id"`
	Reason      string     `json:"reason"`
	CreatedAt   time.Time  `json:"created_at"`
	Status      string     `json:"status"`
	PublishedAt *time.Time `json:"published_at"`
	EnforcedAt  *time.Time `json:"enforced_at"`
	Gateways    Gateways   `json:"gateways"`
}

// Gateways is where a receipt stands at the gateways.
type Gateways struct {
	Expected int      `json:"expected"`
	Enforced int      `json:"enforced"`
	Pending  []string `json:"pending"`
	// Departed are gateways that went silent for the silence bound before
	// they applied it, and so left the expected set.
	Departed []string `json:"departed"`
}

// tracked is a receipt this replica watches: its relay published (or
// is publishing) its events, or a caller waits for it.
type tracked struct {
	id          string
	events      int             // how many events it has
	acked       map[string]bool // event ids JetStream acknowledged
	lastSeq     uint64
	committedAt time.Time
	publishedAt time.Time
	published   bool // every event acknowledged
	enforced    bool
	enforcement Enforcement
	done        chan struct{} // closed once enforced
	forgetAt    time.Time
}

// Store answers receipts: from memory for those this replica tracks, from
// the database and the fleet for the others, and records each final result.
type Store struct {
	pool  *pgxpool.Pool
	fleet *Fleet
	now   func() time.Time
	log   *slog.Logger

	final   *prometheus.CounterVec
	latency prometheus.Histogram

	mu      sync.Mutex
	tracked map[string]*tracked
	waiting []*tracked // published, not enforced, by last sequence
	toSave  []*tracked // enforced, not yet written
}

// NewStore returns the receipts of pool, enforced against fleet, which from
// then on tells the store of each change; its metrics are registered with
// reg.
func NewStore(pool *pgxpool.Pool, fleet *Fleet, now func() time.Time, reg prometheus.Registerer, log *slog.Logger) *Store {
	s := &Store{pool: pool, fleet: fleet, now: now, log: log, tracked: map[string]*tracked{},
		final: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiond_receipts_total", Help: "Revocation receipts this replica tracked to their end, by how they ended (enforced, expired).",
		}, []string{"status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sessiond_receipt_commit_to_enforced_seconds", Help: "Time from a revocation's commit to its enforcement at every expected gateway.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		})}
	s.final.WithLabelValues(Enforced) // both series from the start, for alerts
	s.final.WithLabelValues("expired")
	reg.MustRegister(s.final, s.latency)
	fleet.changed = s.check
	return s
}

// get returns the tracked receipt id, creating it.
func (s *Store) get(id string) *tracked {
	t, ok := s.tracked[id]
	if !ok {
		t = &tracked{id: id, acked: map[string]bool{}, done: make(chan struct{}), forgetAt: s.now().Add(10 * time.Minute)}
		s.tracked[id] = t
	}
	return t
}

// Acked takes one of the relay's acks (outbox.Config.OnAck): event m was
// stored at stream sequence seq; its transaction committed at committedAt.
func (s *Store) Acked(m outbox.Message, seq uint64, committedAt time.Time) {
	if m.Receipt == "" {
		return
	}
	s.mu.Lock()
	t := s.get(m.Receipt)
	wasPublished, first := t.published, false
	if m.ReceiptEvents > 0 { // 0: not known yet (committed in batches)
		t.events = m.ReceiptEvents
	}
	t.acked[m.EventID] = true
	t.lastSeq = max(t.lastSeq, seq)
	if t.committedAt.IsZero() || committedAt.Before(t.committedAt) {
		t.committedAt = committedAt
	}
	if !wasPublished && t.events > 0 && len(t.acked) >= t.events {
		t.published, t.publishedAt = true, s.now()
		i, _ := slices.BinarySearchFunc(s.waiting, t.lastSeq, func(w *tracked, seq uint64) int { return cmp.Compare(w.lastSeq, seq) })
		s.waiting = slices.Insert(s.waiting, i, t)
		// Behind the oldest it cannot be enforced first: the fleet's watch
		// on the oldest will wake the store.
		first = i == 0
	}
	s.mu.Unlock()
	if first {
		s.check()
	}
}

// check enforces, in order of sequence, the published receipts that every
// expected gateway has applied. It stops at the first that waits: gateways
// apply in stream order, so the ones after it (published later, expecting
// the same gateways or more) wait too.
//
// Then it asks the fleet to wake it when the first waiting one may be
// enforced (Fleet.watch): until then reports cost it nothing.
func (s *Store) check() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if len(s.waiting) == 0 {
			s.fleet.unwatch()
			return
		}
		// The oldest first, in O(members): most wakes settle nothing more
		// than it, and the view below costs a sort.
		if !s.fleet.watch(s.waiting[0].lastSeq, s.waiting[0].publishedAt) {
			return
		}
		now, since := s.now(), s.waiting[0].publishedAt
		for _, t := range s.waiting {
			if t.publishedAt.Before(since) {
				since = t.publishedAt
			}
		}
		v := s.fleet.view(since)
		n := 0
		for _, t := range s.waiting {
			e, ok := v.enforced(t.lastSeq, t.publishedAt)
			if !ok {
				if e = s.fleet.enforcement(t.lastSeq, t.publishedAt, false); len(e.Pending) > 0 {
					break
				}
			}
			e.At = now
			s.enforce(t, e)
			n++
		}
		s.waiting = s.waiting[n:]
	}
}

// enforce records that t is enforced (s.mu held).
func (s *Store) enforce(t *tracked, e Enforcement) {
	if t.enforced {
		return
	}
	t.enforced, t.enforcement = true, e
	close(t.done)
	s.final.WithLabelValues(Enforced).Inc()
	if !t.committedAt.IsZero() {
		s.latency.Observe(e.At.Sub(t.committedAt).Seconds())
	}
	s.toSave = append(s.toSave, t)
}

// Run sweeps the fleet every second (silent gateways leave), writes final
// results, and forgets old receipts, until ctx ends.
func (s *Store) Run(ctx context.Context) {
	saves := time.NewTicker(50 * time.Millisecond)
	defer saves.Stop()
	go loop.Every(ctx, time.Second, func(context.Context) {
		s.fleet.Sweep()
		s.forget()
	})
	for {
		select {
		case <-ctx.Done():
			s.save(context.WithoutCancel(ctx))
			return
		case <-saves.C:
			s.save(ctx)
		}
	}
}

// forget drops receipts tracked for ten minutes without an end.
func (s *Store) forget() {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tracked {
		if !t.enforced && now.After(t.forgetAt) {
			delete(s.tracked, id)
			s.final.WithLabelValues("expired").Inc()
			s.waiting = slices.DeleteFunc(s.waiting, func(w *tracked) bool { return w == t })
		}
	}
}

// save writes the final results gathered since the last save, in one
// statement, and stops tracking them: from then on they are read from the
// database. A lost write costs nothing that cannot be worked out again from
// the outbox and the fleet, so it does not wait for the disk.
func (s *Store) save(ctx context.Context) {
	s.mu.Lock()
	batch := s.toSave
	s.toSave = nil
	for _, t := range batch {
		delete(s.tracked, t.id)
	}
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ids, pubs, seqs, encs, exps, deps := make([]string, len(batch)), make([]time.Time, len(batch)), make([]int64, len(batch)),
		make([]time.Time, len(batch)), make([]int32, len(batch)), make([]string, len(batch))
	for i, t := range batch {
		ids[i], pubs[i], seqs[i], encs[i] = t.id, t.publishedAt, int64(t.lastSeq), t.enforcement.At
		exps[i], deps[i] = int32(t.enforcement.Expected), strings.Join(t.enforcement.Departed, ",")
	}
	err := postgres.ExecUnsynced(ctx, s.pool, `UPDATE revocation_receipts r SET published_at = x.p, last_seq = x.s, enforced_at = x.e,
			expected = x.n, departed = string_to_array(NULLIF(x.d, ''), ',')::uuid[]
		FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::timestamptz[], $5::int[], $6::text[]) AS x(id, p, s, e, n, d)
		WHERE r.id = x.id AND r.enforced_at IS NULL`, ids, pubs, seqs, encs, exps, deps)
	if err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "receipts not recorded; they will be worked out again when read", "error", err.Error(), "receipts", len(batch))
	}
}

// row is a receipt as stored.
type row struct {
	actorID, orgID *string
	reason         string
	events         int
	complete       bool // false while batches are still to commit
	createdAt      time.Time
	publishedAt    *time.Time
	lastSeq        *int64
	enforcedAt     *time.Time
	expected       *int32
	departed       []string
}

var errNotFound = fmt.Errorf("%w: no revocation with this id in your scope", sessions.ErrNotFound)

// load reads receipt id, in p's scope: the caller who made it, or an admin
// of its org, or a global admin. ErrNotFound otherwise.
func (s *Store) load(ctx context.Context, p sessions.Principal, id string) (row, error) {
	var r row
	err := s.pool.QueryRow(ctx, `SELECT actor_id::text, org_id::text, reason, events, complete, created_at, published_at, last_seq, enforced_at,
			expected, COALESCE(departed::text[], '{}') FROM revocation_receipts WHERE id = $1`, id).
		Scan(&r.actorID, &r.orgID, &r.reason, &r.events, &r.complete, &r.createdAt, &r.publishedAt, &r.lastSeq, &r.enforcedAt, &r.expected, &r.departed)
	if errors.Is(err, pgx.ErrNoRows) {
		return row{}, errNotFound
	}
	if err != nil {
		return row{}, fmt.Errorf("%w: receipt: %w", sessions.ErrUnavailable, err)
	}
	mine := r.actorID != nil && *r.actorID == p.UserID && p.UserID != ""
	inScope := p.Role == tokens.RoleGlobalAdmin || (p.Role == tokens.RoleOrgAdmin && r.orgID != nil && *r.orgID == p.OrgID)
	if !mine && !inScope {
		return row{}, errNotFound
	}
	return r, nil
}

// Get returns receipt id as p may see it. Errors: ErrInvalid (not a
// UUID), ErrNotFound (unknown or out of scope), ErrUnavailable.
func (s *Store) Get(ctx context.Context, p sessions.Principal, id string) (Receipt, error) {
	if !events.IsUUID(id) {
		return Receipt{}, sessions.Invalid("revocation id must be a UUID")
	}
	r, err := s.load(ctx, p, id)
	if err != nil {
		return Receipt{}, err
	}
	return s.status(ctx, id, r)
}

// status works out where receipt id (stored as r) stands.
// base is receipt id as committed, from its row.
func base(id string, r row) Receipt {
	return Receipt{ID: id, Reason: r.reason, CreatedAt: r.createdAt.UTC(), Status: Committed, Gateways: Gateways{Pending: []string{}, Departed: []string{}}}
}

// trackedStatus completes out from t, a published receipt this replica tracks
// (s.mu held).
func (s *Store) trackedStatus(out Receipt, t *tracked) Receipt {
	pub := t.publishedAt.UTC()
	out.Status, out.PublishedAt = Published, &pub
	e, enforced := t.enforcement, t.enforced
	if !enforced {
		e = s.fleet.enforcement(t.lastSeq, t.publishedAt, false)
	}
	return fill(out, e, enforced)
}

func (s *Store) status(ctx context.Context, id string, r row) (Receipt, error) {
	out := base(id, r)
	switch {
	case r.enforcedAt != nil: // final
		pub, enf := r.publishedAt.UTC(), r.enforcedAt.UTC()
		out.Status, out.PublishedAt, out.EnforcedAt = Enforced, &pub, &enf
		if r.expected != nil {
			out.Gateways.Expected, out.Gateways.Enforced = int(*r.expected), int(*r.expected)
		}
		out.Gateways.Departed = append(out.Gateways.Departed, r.departed...)
		return out, nil
	case !r.complete: // batches are still to commit
		return out, nil
	case r.events == 0: // it revoked nothing: there is nothing to enforce
		at := out.CreatedAt
		out.Status, out.PublishedAt, out.EnforcedAt = Enforced, &at, &at
		return out, nil
	}
	s.mu.Lock()
	if t, ok := s.tracked[id]; ok && t.published {
		defer s.mu.Unlock()
		return s.trackedStatus(out, t), nil
	}
	s.mu.Unlock()
	// Not tracked here: the outbox says what JetStream acknowledged.
	var (
		acked   int
		lastSeq *int64
		sentAt  *time.Time
	)
	if err := s.pool.QueryRow(ctx, `SELECT count(stream_seq), max(stream_seq), max(sent_at) FROM outbox WHERE receipt_id = $1`, id).
		Scan(&acked, &lastSeq, &sentAt); err != nil {
		return Receipt{}, fmt.Errorf("%w: receipt: %w", sessions.ErrUnavailable, err)
	}
	if acked < r.events || lastSeq == nil || sentAt == nil {
		return out, nil
	}
	pub := sentAt.UTC()
	out.Status, out.PublishedAt = Published, &pub
	e := s.fleet.enforcement(uint64(*lastSeq), *sentAt, true)
	if len(e.Pending) == 0 {
		if e.At.IsZero() || e.At.Before(pub) {
			e.At = pub // none expected, or enforced before the relay's mark
		}
		s.mu.Lock()
		t := s.get(id)
		t.events, t.lastSeq, t.publishedAt, t.published = r.events, uint64(*lastSeq), *sentAt, true
		s.enforce(t, e)
		s.mu.Unlock()
	}
	return fill(out, e, len(e.Pending) == 0), nil
}

func fill(out Receipt, e Enforcement, enforced bool) Receipt {
	out.Gateways.Expected, out.Gateways.Enforced = e.Expected, e.Enforced
	out.Gateways.Pending = append(out.Gateways.Pending, e.Pending...)
	out.Gateways.Departed = append(out.Gateways.Departed, e.Departed...)
	if enforced {
		at := e.At.UTC()
		out.Status, out.EnforcedAt = Enforced, &at
		out.Gateways.Pending = []string{}
	}
	return out
}

// Wait returns receipt id once it is enforced or after d (at most MaxWait),
// whichever comes first; p made it. Errors as Get.
func (s *Store) Wait(ctx context.Context, p sessions.Principal, id string, d time.Duration) (Receipt, error) {
	d = min(d, MaxWait)
	r, err := s.load(ctx, p, id)
	if err != nil {
		return Receipt{}, err
	}
	if r.enforcedAt != nil || (r.events == 0 && r.complete) {
		return s.status(ctx, id, r)
	}
	s.mu.Lock()
	t := s.get(id)
	done := t.done
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// This replica's relay normally publishes what its requests commit, and
	// its acks end the wait at once; when another replica's relay did, only
	// the outbox tells, so look there now and then.
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-done:
			// From t itself: once enforced, the store may stop tracking it
			// (save) before its result is in the database.
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.trackedStatus(base(id, r), t), nil
		case <-ctx.Done():
			return s.status(context.WithoutCancel(ctx), id, r)
		case <-poll.C:
			if !r.complete { // its batches were still committing
				if again, err := s.load(ctx, p, id); err == nil {
					r = again
				}
			}
			if got, err := s.status(ctx, id, r); err == nil && got.Status == Enforced {
				return got, nil
			}
		}
	}
}

// Fleet is the fleet of gateways the store works with.
func (s *Store) Fleet() *Fleet { return s.fleet }
