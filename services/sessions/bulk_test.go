package sessions_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/receipts"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestBulkRevocationInBatches: a filter that is not a rule revokes session
// by session, in transactions of BulkBatch sessions, under one receipt that
// is complete only with the last batch (which holds the audit entry). It
// ends exactly the sessions matched at the call's start: not one of another
// device type, nor one stamped after the start (a sign-in while the batches
// commit), and the counts, the per-session rows and the events add up.
func TestBulkRevocationInBatches(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	ctx := context.Background()
	org := e.Org("A")
	now := e.Clock.Now()
	web := 2*sessions.BulkBatch + 7 // two full batches and a short one
	if _, err := e.Pool.Exec(ctx, `INSERT INTO users (id, org_id, email, role)
		SELECT gen_random_uuid(), $1, 'batch-' || gen_random_uuid()::text || '@example.com', 'user' FROM generate_series(1, 30)`, org); err != nil {
		t.Fatal(err)
	}
	insert := func(n int, device string, created time.Time) {
		t.Helper()
		if _, err := e.Pool.Exec(ctx, `INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
			SELECT gen_random_uuid(), (SELECT id FROM users WHERE org_id = $1 ORDER BY id OFFSET i % 30 LIMIT 1), $1, $2, $3, $3, $4
			FROM generate_series(1, $5) AS i`, org, device, created, now.Add(24*time.Hour), n); err != nil {
			t.Fatal(err)
		}
	}
	insert(web, "web", now.Add(-time.Minute))
	insert(5, "ios", now.Add(-time.Minute))
	insert(3, "web", now.Add(time.Second)) // stamped after the call's start
	outboxBefore := e.Count("outbox")

	res, err := e.Svc.RevokeByFilter(ctx, sessions.SystemPrincipal, sessions.BulkFilter{OrgID: org, DeviceType: "web", ReasonText: "browser flaw"}, sessions.ClientMeta{})
	if err != nil || res.RevokedSessions != web || res.RevokedUsers != 30 {
		t.Fatalf("%+v %v, want %d sessions of 30 users", res, err, web)
	}
	for cond, want := range map[string]int{
		"sessions WHERE org_id = '" + org + "' AND device_type = 'web' AND revoked_reason = 'admin_bulk_revoke'":               web,
		"sessions WHERE org_id = '" + org + "' AND revoked_at IS NULL AND device_type = 'ios'":                                 5,
		"sessions WHERE org_id = '" + org + "' AND revoked_at IS NULL AND created_at > '" + now.Format(time.RFC3339Nano) + "'": 3,
		"revocations WHERE org = '" + org + "' AND kind = 'session'":                                                           web,
		"audit_log WHERE org_id = '" + org + "' AND action = 'session_revoked'":                                                web,
		"audit_log WHERE org_id = '" + org + "' AND action = 'bulk_revoke'":                                                    1,
		"outbox WHERE receipt_id = '" + res.RevocationID + "' AND subject = '" + events.SubjectSessionRevoked + "'":            web,
		"revocation_receipts WHERE id = '" + res.RevocationID + "' AND complete AND events = " + strconv.Itoa(web):             1,
	} {
		if got := e.Count(cond); got != want {
			t.Errorf("%s: %d, want %d", cond, got, want)
		}
	}
	if n := e.Count("outbox") - outboxBefore; n != web {
		t.Errorf("%d outbox rows, want %d", n, web)
	}
}

// batches records what the service hands to the relay, one entry per
// committed transaction.
type batches struct {
	mu   sync.Mutex
	msgs [][]outbox.Message
}

func (b *batches) Committed(_ context.Context, msgs []outbox.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, msgs)
}

// TestABatchedReceiptIsCompleteWithItsLastBatch: the events of a bulk
// revocation's batches reach the relay as each batch commits; only the last
// batch's name the receipt's total, so the receipt is not published (and
// cannot be enforced) while batches are still to come, and is once the
// last is acknowledged.
func TestABatchedReceiptIsCompleteWithItsLastBatch(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	ctx := context.Background()
	relay := &batches{}
	svc, err := sessions.NewService(e.Pool, e.Keys, e.KEK, sessionstest.Config(), sessions.NewMetrics(prometheus.NewRegistry()), relay, e.Log)
	if err != nil {
		t.Fatal(err)
	}
	org := e.Org("A")
	n := 2 * sessions.BulkBatch // no short batch at the end: the second is the last
	if _, err := e.Pool.Exec(ctx, `WITH u AS (INSERT INTO users (id, org_id, email, role) VALUES (gen_random_uuid(), $1, $2, 'user') RETURNING id)
		INSERT INTO sessions (id, user_id, org_id, device_type, created_at, last_active_at, expires_at)
		SELECT gen_random_uuid(), u.id, $1, 'android', now() - interval '1 minute', now(), now() + interval '1 day' FROM u, generate_series(1, $3)`,
		org, sessionstest.UniqueEmail("batch"), n); err != nil {
		t.Fatal(err)
	}
	res, err := svc.RevokeByFilter(ctx, sessions.SystemPrincipal, sessions.BulkFilter{OrgID: org, DeviceType: "android"}, sessions.ClientMeta{})
	if err != nil || res.RevokedSessions != n {
		t.Fatalf("%+v %v", res, err)
	}
	if len(relay.msgs) != 2 || len(relay.msgs[0]) != sessions.BulkBatch || len(relay.msgs[1]) != sessions.BulkBatch {
		t.Fatalf("handed over in %d transactions, want two full batches", len(relay.msgs))
	}
	for i, want := range []int{0, n} {
		for _, m := range relay.msgs[i] {
			if m.Receipt != res.RevocationID || m.ReceiptEvents != want {
				t.Fatalf("batch %d: an event of receipt %q says %d events, want %d", i, m.Receipt, m.ReceiptEvents, want)
			}
		}
	}
	status := func() string {
		t.Helper()
		rc, err := e.Receipts.Get(ctx, sessions.SystemPrincipal, res.RevocationID)
		if err != nil {
			t.Fatal(err)
		}
		return rc.Status
	}
	seq := uint64(0)
	ack := func(msgs []outbox.Message) {
		for _, m := range msgs {
			seq++
			e.Receipts.Acked(m, seq, time.Now())
		}
	}
	ack(relay.msgs[0])
	if got := status(); got != receipts.Committed {
		t.Fatalf("with its first batch acknowledged, the receipt is %s, want committed", got)
	}
	ack(relay.msgs[1])
	if got := status(); got != receipts.Enforced { // no gateway is expected here
		t.Fatalf("with every batch acknowledged, the receipt is %s, want enforced", got)
	}
}
