package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
)

// mixed publishes n revocations of every kind: sessions, tokens, users and
// org rules.
func (w *world) mixed(n int) {
	w.t.Helper()
	now := time.Now().UTC()
	exp := now.Add(6 * time.Minute)
	for i := range n {
		g := newGrant()
		switch i % 4 {
		case 0:
			w.publish(revokeSession(g))
		case 1:
			w.publish(events.TokenRevoked{EventID: uuid.NewString(), JTI: g.jti, SID: g.sid, Sub: g.sub, Org: g.org, Reason: events.ReasonLogout, RevokedAt: now, ExpiresAt: exp})
		case 2:
			w.publish(events.UserRevoked{EventID: uuid.NewString(), Sub: g.sub, Org: g.org, NotBefore: now.Add(time.Duration(i) * time.Microsecond), Reason: events.ReasonUserDisabled, RevokedAt: now, ExpiresAt: exp})
		default:
			w.publish(events.OrgRevoked{EventID: uuid.NewString(), Org: g.org, Role: "user", AuthBefore: now, Reason: events.ReasonAdminBulkRevoke, RevokedAt: now, ExpiresAt: exp})
		}
	}
}

// snapFeed is a feed of w's stream into a blocklist of its own, with the
// snapshot bucket when snaps is set (writing every every).
func (w *world) snapFeed(snaps jetstream.ObjectStore, every time.Duration) (*Feed, *Blocklist) {
	w.t.Helper()
	nc, err := natsx.Connect(w.nats.URL(), "gateway", testLog())
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	bl := NewBlocklist()
	f := NewFeed(js, bl, 5*time.Second, NewMetrics(prometheus.NewRegistry()), testLog())
	f.snapshots, f.snapshotEvery = snaps, every
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	w.t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(w.t, 20*time.Second, func() bool { return f.Current() }, "the feed never became current")
	return f, bl
}

func (w *world) snapshotBucket() jetstream.ObjectStore {
	w.t.Helper()
	s, err := w.js.CreateOrUpdateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: SnapshotsBucket})
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// sameEntries fails the test unless a and b hold the same entries, one by
// one.
func sameEntries(t *testing.T, what string, a, b *Blocklist) {
	t.Helper()
	now := time.Now()
	ea, eb := a.entries(now), b.entries(now)
	if len(ea) == 0 || !slices.Equal(ea, eb) {
		t.Fatalf("%s: %d entries against %d of a full replay (first difference: %v)", what, len(ea), len(eb), firstDiff(ea, eb))
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + " / " + b[i]
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

// A gateway that starts from a snapshot and replays the tail after it holds
// exactly what a full replay holds, entry by entry.
func TestASnapshotAndItsTailEqualAFullReplay(t *testing.T) {
	w := newWorld(t, 5*time.Second)
	w.mixed(400)
	snaps := w.snapshotBucket()
	writer, _ := w.snapFeed(snaps, 50*time.Millisecond)
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, err := snaps.GetInfo(context.Background(), snapshotObject)
		return err == nil
	}, "no snapshot was written")
	writer.snapshotEvery = time.Hour // the snapshot stays the one taken now
	w.mixed(120)                     // the tail

	fromSnapshot, b1 := w.snapFeed(snaps, 0)
	full, b2 := w.snapFeed(nil, 0)
	testenv.Eventually(t, 10*time.Second, func() bool {
		a1, _ := fromSnapshot.Applied()
		a2, _ := full.Applied()
		return a1 == 520 && a2 == 520
	}, "the feeds never applied all 520 messages")
	if fromSnapshot.snapshotSeq.Load() == 0 {
		t.Fatal("the feed did not start from the snapshot")
	}
	sameEntries(t, "snapshot and tail", b1, b2)
}

// A corrupt snapshot, a stale one and one of another stream are not loaded:
// the gateway replays the whole stream, and holds what a full replay holds.
func TestABadSnapshotFallsBackToTheFullReplay(t *testing.T) {
	w := newWorld(t, 5*time.Second)
	w.mixed(200)
	snaps := w.snapshotBucket()
	_, ref := w.snapFeed(nil, 0)
	info, err := w.js.Stream(context.Background(), events.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	created := info.CachedInfo().Created
	var good bytes.Buffer
	if err := ref.WriteSnapshot(&good, time.Now()); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		data    []byte
		created time.Time
		taken   time.Time
	}{
		"corrupt":           {append(append([]byte{}, good.Bytes()[:good.Len()/2]...), 0xff, 0x01), created, time.Now()},
		"not a snapshot":    {[]byte("hello"), created, time.Now()},
		"older than maxage": {good.Bytes(), created, time.Now().Add(-time.Hour)},
		"another stream":    {good.Bytes(), created.Add(-time.Minute), time.Now()},
	} {
		t.Run(name, func(t *testing.T) {
			h := nats.Header{}
			h.Set(headerSeq, "200")
			h.Set(headerCreated, c.created.Format(time.RFC3339Nano))
			h.Set(headerTakenAt, c.taken.UTC().Format(time.RFC3339Nano))
			if _, err := snaps.Put(context.Background(), jetstream.ObjectMeta{Name: snapshotObject, Headers: h}, bytes.NewReader(c.data)); err != nil {
				t.Fatal(err)
			}
			f, bl := w.snapFeed(snaps, 0)
			if f.snapshotSeq.Load() != 0 {
				t.Fatalf("a %s snapshot was loaded", name)
			}
			sameEntries(t, name, bl, ref)
		})
	}
}

func TestSnapshotsReadBackAndRefuseWhatIsMalformed(t *testing.T) {
	b := NewBlocklist()
	now := time.Now()
	for range 50 {
		g := newGrant()
		id := func(s string) ID { x, _ := ParseID(s); return x }
		b.AddSession(id(g.sid), now.Add(time.Minute), now)
		b.AddToken(id(g.jti), now.Add(time.Minute), now)
		b.AddUser(id(g.sub), now, now.Add(time.Minute), now)
		b.AddOrgRule(id(g.org), "org_admin", now, now.Add(time.Minute), now)
		b.AddSession(id(uuid.NewString()), now.Add(time.Second), now) // expires before the load below
	}
	var buf bytes.Buffer
	if err := b.WriteSnapshot(&buf, now); err != nil {
		t.Fatal(err)
	}
	if _, err := readSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	c, n, err := loadSnapshot(bytes.NewReader(buf.Bytes()), now.Add(2*time.Second))
	if err != nil || n != 200 {
		t.Fatalf("loaded %d entries (%v), want the 200 still live", n, err)
	}
	if !slices.Equal(c.entries(now.Add(2*time.Second)), b.entries(now.Add(2*time.Second))) {
		t.Fatal("the loaded blocklist differs from the written one")
	}
	// As a gateway loads one: streamed into a blocklist of its own, taken
	// over whole.
	streamed, n, err := loadSnapshot(bytes.NewReader(buf.Bytes()), now.Add(2*time.Second))
	if err != nil || n != 200 {
		t.Fatalf("streamed load: %d entries, %v", n, err)
	}
	d := NewBlocklist()
	d.adopt(streamed)
	if d.Len() != 200 || !slices.Equal(d.entries(now.Add(2*time.Second)), b.entries(now.Add(2*time.Second))) {
		t.Fatal("the adopted blocklist differs from the written one")
	}
	if got, _, err := loadSnapshot(bytes.NewReader(buf.Bytes()[:buf.Len()-3]), now); err == nil || got != nil {
		t.Fatal("a truncated snapshot was loaded")
	}
	for name, bad := range map[string][]byte{
		"empty": {}, "no magic": []byte("RVKSNAP2" + string(buf.Bytes()[8:])), "truncated": buf.Bytes()[:buf.Len()-3],
		"trailing": append(append([]byte{}, buf.Bytes()...), 0), "huge count": append([]byte(snapshotMagic), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f),
	} {
		if _, err := readSnapshot(bytes.NewReader(bad)); !errors.Is(err, errSnapshot) {
			t.Errorf("%s: %v, want errSnapshot", name, err)
		}
	}
}

// readSnapshot parses a whole snapshot. It returns an error wrapping
// errSnapshot for anything malformed or truncated, and nothing partial.
func readSnapshot(r io.Reader) (snapshotEntries, error) {
	var e snapshotEntries
	err := scanSnapshot(r, snapshotVisitor{
		token:   func(x idExpiry) { e.tokens = append(e.tokens, x) },
		session: func(x idExpiry) { e.sessions = append(e.sessions, x) },
		user:    func(u userSnap) { e.users = append(e.users, u) },
		rule:    func(r ruleSnap) { e.rules = append(e.rules, r) },
	})
	if err != nil {
		return snapshotEntries{}, err
	}
	return e, nil
}

// entries lists every live entry at now, in a canonical order: what two
// blocklists hold, compared entry by entry (tests).
func (b *Blocklist) entries(now time.Time) []string {
	var buf bytes.Buffer
	if err := b.WriteSnapshot(&buf, now); err != nil {
		return nil
	}
	e, err := readSnapshot(&buf)
	if err != nil {
		return nil
	}
	var out []string
	for _, x := range e.tokens {
		out = append(out, fmt.Sprintf("token %x %d", x.id, x.expires))
	}
	for _, x := range e.sessions {
		out = append(out, fmt.Sprintf("session %x %d", x.id, x.expires))
	}
	for _, u := range e.users {
		out = append(out, fmt.Sprintf("user %x %d %d", u.id, u.notBefore, u.expires))
	}
	for _, r := range e.rules {
		out = append(out, fmt.Sprintf("rule %x %q %d %d", r.org, r.role, r.authBefore, r.expires))
	}
	slices.Sort(out)
	return out
}
