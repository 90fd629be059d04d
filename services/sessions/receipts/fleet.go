// Package receipts proves that revocations are enforced: it keeps the fleet
// of gateways from their gateway.v1.applied reports, learns from the outbox
// relay at which stream sequence each revocation was published, and tells
// for every revocation receipt whether it is committed, published or
// enforced, and which gateways it still waits for.
//
// No message flows per gateway per revocation. A gateway applies
// REVOCATIONS in stream order, so one number, its watermark, says all it has
// applied; a receipt is enforced once every gateway that was live when it
// was published has a watermark at or past the receipt's last sequence.
// Every sessiond replica hears every report, so any replica answers any
// receipt; the replica whose relay published a receipt's events also waits
// for it in memory and records the final result.
package receipts

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
)

// DefaultSilence is how long a gateway may stay silent before it leaves the
// fleet and the expected set of every pending receipt (the contract's 30 s).
const DefaultSilence = 30 * time.Second

// Gateway is one gateway as the fleet knows it.
type Gateway struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	StartedAt  time.Time `json:"started_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	AppliedSeq uint64    `json:"applied_seq"`
	State      string    `json:"state"`
	// StreamLastSeq is the stream's last sequence the gateway last saw; the
	// difference to AppliedSeq is its lag in messages.
	StreamLastSeq uint64 `json:"stream_last_seq"`
}

// point is one report's watermark and when it arrived here.
type point struct {
	seq uint64
	at  time.Time
}

// history is how many recent watermarks a gateway keeps, to tell when it
// reached a sequence: at a report a second, a quarter of an hour; under
// load, the last few thousand revocations.
const history = 1024

type member struct {
	Gateway
	points []point // ring of the latest watermarks, in arrival order
	next   int
	leftAt time.Time // when it left (departed gateways only)
	// offset is the least of (arrival here - the report's at) over its
	// reports: how far our clock runs ahead of the gateway's, plus the
	// shortest transit seen. Its started_at is moved onto our clock by it.
	offset time.Duration
	timed  bool // offset holds a measure (a report with at came)
}

// reached is when the gateway's watermark first reached seq, as far as its
// history tells (the oldest point it holds when the history is shorter).
func (m *member) reached(seq uint64) (time.Time, bool) {
	if m.AppliedSeq < seq {
		return time.Time{}, false
	}
	// The ring holds points[next:] then points[:next], in arrival order,
	// watermarks rising: the i-th oldest is at (next+i) mod len.
	n := len(m.points)
	oldest := func(i int) point { return m.points[(m.next+i)%n] }
	i := sort.Search(n, func(i int) bool { return oldest(i).seq >= seq })
	if i == n {
		return m.LastSeenAt, true
	}
	return oldest(i).at, true
}

// Fleet is the set of gateways heard from. Every replica keeps its own,
// from the same reports.
type Fleet struct {
	silence time.Duration
	now     func() time.Time
	size    *prometheus.GaugeVec
	reports prometheus.Counter
	changed func() // called after each change, outside the lock

	mu       sync.Mutex
	members  map[string]*member
	departed map[string]*member // gateways that went silent, kept ten minutes
	// w is what the receipts store waits for: every member that started by
	// w.since at or past w.seq. Reports keep w.below (those still short)
	// counted, so a report costs O(1) and only the one that brings below to
	// zero wakes the store: with thousands of gateways each reporting ten
	// times a second, checking every receipt against every gateway on every
	// report would cost sessiond a core.
	w struct {
		active bool
		seq    uint64
		since  time.Time
		below  int
	}
}

// NewFleet returns an empty fleet whose gateways leave after silence; its
// gauge of gateways by state is registered with reg.
func NewFleet(silence time.Duration, now func() time.Time, reg prometheus.Registerer) *Fleet {
	f := &Fleet{silence: silence, now: now, members: map[string]*member{}, departed: map[string]*member{},
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessiond_gateways", Help: "Gateways heard from within the silence bound, by the state they report (current, stale, failing_closed).",
		}, []string{"state"}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiond_gateway_reports_total", Help: "gateway.v1.applied reports heard (a fleet of N gateways sends about N a second, more under revocations someone waits for).",
		})}
	for _, st := range []string{events.GatewayCurrent, events.GatewayStale, events.GatewayFailingClosed} {
		f.size.WithLabelValues(st).Set(0) // every series from the start, for alerts
	}
	reg.MustRegister(f.size, f.reports)
	return f
}

// Silence is how long a gateway may stay silent before it leaves.
func (f *Fleet) Silence() time.Duration { return f.silence }

// Report takes a gateway's report. A report older than the latest of its
// gateway changes nothing (core NATS keeps a publisher's order, but a
// gateway that restarts reports anew under a new id).
func (f *Fleet) Report(r events.GatewayApplied) {
	f.reports.Inc()
	now := f.now()
	f.mu.Lock()
	m, ok := f.members[r.GatewayID]
	if !ok {
		if m, ok = f.departed[r.GatewayID]; ok { // it came back
			delete(f.departed, r.GatewayID)
			m.leftAt = time.Time{}
		} else {
			m = &member{points: make([]point, 0, 8)}
		}
		f.members[r.GatewayID] = m
	}
	if r.AppliedSeq < m.AppliedSeq {
		r.AppliedSeq = m.AppliedSeq // watermarks never go back
	}
	// A gateway's clock is its own (any implementation may report): its
	// started_at is compared with our publish times only once moved onto
	// our clock. A skewed clock would otherwise count a gateway as started
	// after a revocation it was there to enforce (ahead), and leave its
	// receipt enforced before it applied it. Taking the least offset keeps
	// the start early (a clock stepped forward later moves it earlier,
	// never later), which only ever waits for more.
	if !r.At.IsZero() {
		if off := now.Sub(r.At); !m.timed || off < m.offset {
			m.offset, m.timed = off, true
		}
	}
	r.StartedAt = r.StartedAt.Add(m.offset)
	wake := f.counts(m, ok, r)
	m.Gateway = Gateway{ID: r.GatewayID, Name: r.Name, Version: r.Version, StartedAt: r.StartedAt.UTC(), LastSeenAt: now.UTC(),
		AppliedSeq: r.AppliedSeq, StreamLastSeq: r.StreamLastSeq, State: r.State}
	if len(m.points) < history {
		m.points = append(m.points, point{r.AppliedSeq, now})
	} else {
		m.points[m.next] = point{r.AppliedSeq, now}
		m.next = (m.next + 1) % history
	}
	f.mu.Unlock()
	if wake && f.changed != nil {
		f.changed()
	}
}

// counts updates the watch's count for m's report r (f.mu held; known
// says m reported before, m still holds the previous report) and reports
// whether the store must look again: the last member short of the watched
// sequence reached it, or nothing is watched.
func (f *Fleet) counts(m *member, known bool, r events.GatewayApplied) bool {
	if !f.w.active {
		return true
	}
	if r.StartedAt.After(f.w.since) {
		return false // not expected by what is watched
	}
	short := !known || m.AppliedSeq < f.w.seq // short before this report (a newcomer was not counted)
	switch {
	case short && r.AppliedSeq >= f.w.seq:
		if known {
			f.w.below--
		}
	case !known: // a newcomer short of it
		f.w.below++
	}
	return f.w.below <= 0
}

// watch makes the fleet wake the store (changed) once every member that
// started by since has applied seq, and reports whether that is so already.
// unwatch turns it off: then every report wakes the store.
func (f *Fleet) watch(seq uint64, since time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.w.active, f.w.seq, f.w.since, f.w.below = true, seq, since, 0
	for _, m := range f.members {
		if !m.StartedAt.After(since) && m.AppliedSeq < seq {
			f.w.below++
		}
	}
	return f.w.below == 0
}

func (f *Fleet) unwatch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.w.active = false
}

// Sweep lets gateways silent for longer than the bound leave, forgets those
// that left ten minutes ago, and updates the gauge. It reports whether a
// gateway left.
func (f *Fleet) Sweep() bool {
	now := f.now()
	f.mu.Lock()
	left := false
	counts := map[string]int{events.GatewayCurrent: 0, events.GatewayStale: 0, events.GatewayFailingClosed: 0}
	for id, m := range f.members {
		if now.Sub(m.LastSeenAt) > f.silence {
			delete(f.members, id)
			m.leftAt = now
			f.departed[id] = m
			left = true
			continue
		}
		counts[m.State]++
	}
	for id, m := range f.departed {
		if now.Sub(m.leftAt) > 10*time.Minute {
			delete(f.departed, id)
		}
	}
	f.mu.Unlock()
	for state, n := range counts {
		f.size.WithLabelValues(state).Set(float64(n))
	}
	if left && f.changed != nil {
		f.changed()
	}
	return left
}

// List is the fleet, by name.
func (f *Fleet) List() []Gateway {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Gateway, 0, len(f.members))
	for _, m := range f.members {
		out = append(out, m.Gateway)
	}
	slices.SortFunc(out, func(a, b Gateway) int { return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID)) })
	return out
}

// Enforcement is where a revocation stands at the gateways.
type Enforcement struct {
	Expected int      // gateways that must apply it: live, and started by its publish
	Enforced int      // of them, those that have
	Pending  []string // of them, those that have not yet
	Departed []string // gateways that left before they applied it
	// At is when the last expected gateway's watermark reached it (zero
	// while some are pending, or when none were expected).
	At time.Time
}

// view is the fleet at one instant, to settle many receipts at once: a
// receipt up to a sequence every member has applied is enforced, whichever
// members it expected, and then only the count of those and the departed
// need working out. Checking each receipt against every member cost the
// store O(members) per receipt: with 1,000 gateways and 1,500 revocations
// a second, a tenth of a core.
type view struct {
	minSeq      uint64    // the lowest watermark of any member
	members     int       // how many there are
	lastStarted time.Time // the latest start of any member
	departed    []member  // the departed, as they were
}

// view returns the fleet as it is now, for receipts published at since or
// later, in O(members) and without allocating but for the gateways that
// left after since (usually none).
func (f *Fleet) view(since time.Time) view {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := view{minSeq: ^uint64(0), members: len(f.members)}
	for _, m := range f.members {
		v.minSeq = min(v.minSeq, m.AppliedSeq)
		if m.StartedAt.After(v.lastStarted) {
			v.lastStarted = m.StartedAt
		}
	}
	for _, m := range f.departed {
		if m.leftAt.After(since) { // one that left before was not expected
			v.departed = append(v.departed, member{Gateway: m.Gateway, leftAt: m.leftAt})
		}
	}
	return v
}

// enforced is the enforcement of a revocation published at publishedAt up
// to seq when every member has applied seq and every member was there at
// its publish (ok); otherwise (a member restarted since, or one is short
// of seq) ok is false and Fleet.enforcement must tell. At is left to the
// caller.
func (v view) enforced(seq uint64, publishedAt time.Time) (Enforcement, bool) {
	if seq > v.minSeq || v.lastStarted.After(publishedAt) {
		return Enforcement{}, false
	}
	e := Enforcement{Expected: v.members, Enforced: v.members}
	for _, m := range v.departed {
		if !m.StartedAt.After(publishedAt) && m.leftAt.After(publishedAt) && m.AppliedSeq < seq {
			e.Departed = append(e.Departed, m.ID)
		}
	}
	slices.Sort(e.Departed)
	return e, true
}

// enforcement tells where a revocation published at publishedAt, up to
// stream sequence seq, stands. With when, it also works out At from the
// gateways' histories (a receipt nobody here waited for); without, At stays
// zero and the caller, who watched it happen, knows better.
func (f *Fleet) enforcement(seq uint64, publishedAt time.Time, when bool) Enforcement {
	f.mu.Lock()
	defer f.mu.Unlock()
	var e Enforcement
	for _, m := range f.members {
		if m.StartedAt.After(publishedAt) {
			continue // it started later, and replays the stream before it decides
		}
		e.Expected++
		if m.AppliedSeq < seq {
			e.Pending = append(e.Pending, m.ID)
			continue
		}
		e.Enforced++
		if when {
			if at, _ := m.reached(seq); at.After(e.At) {
				e.At = at
			}
		}
	}
	for _, m := range f.departed {
		// It was expected if it was there at the publish: started before,
		// left after (one that had left already was not in the set).
		if !m.StartedAt.After(publishedAt) && m.leftAt.After(publishedAt) && m.AppliedSeq < seq {
			e.Departed = append(e.Departed, m.ID)
			if when && m.leftAt.After(e.At) { // enforced once the laggard left
				e.At = m.leftAt
			}
		}
	}
	slices.Sort(e.Pending)
	slices.Sort(e.Departed)
	if len(e.Pending) > 0 {
		e.At = time.Time{}
	}
	return e
}
