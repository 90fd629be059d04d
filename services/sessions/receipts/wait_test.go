package receipts

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/internal/testenv"
	"github.com/sessionguard/revoke/internal/tokens"
	"github.com/sessionguard/revoke/services/sessions"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestWaitAnswersEnforcedThoughTheStoreLetGo: once a receipt is enforced the
// store stops tracking it at its next save, possibly before the waiting call
// has woken, and before its result is in the database; the wait must still
// answer enforced (it answered committed, under load, 1 in 1,000 times).
func TestWaitAnswersEnforcedThoughTheStoreLetGo(t *testing.T) {
	pool := testenv.Postgres(t)
	now := time.Now
	f := NewFleet(30*time.Second, now, prometheus.NewRegistry())
	s := NewStore(pool, f, now, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Report(report("gw", 0, time.Now().Add(-time.Hour)))
	id, actor := uuid.NewString(), uuid.NewString()
	if _, err := pool.Exec(t.Context(), `INSERT INTO revocation_receipts (id, actor_id, reason, events) VALUES ($1, $2, 'self_revoke', 1)`, id, actor); err != nil {
		t.Fatal(err)
	}
	got := make(chan Receipt, 1)
	go func() {
		rc, err := s.Wait(t.Context(), sessions.Principal{UserID: actor, Role: tokens.RoleUser}, id, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- rc
	}()
	// The wait is parked on the receipt once the store tracks it.
	testenv.Eventually(t, 5*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.tracked[id]
		return ok
	}, "the wait never started")
	s.Acked(outbox.Message{EventID: uuid.NewString(), Receipt: id, ReceiptEvents: 1}, 1, time.Now())
	// Enforced and let go in one step, before the waiting goroutine can run:
	// the report does not wake the store, which is enforced by hand.
	f.changed = nil
	f.Report(report("gw", 1, time.Now().Add(-time.Hour)))
	s.mu.Lock()
	e := f.enforcement(1, s.tracked[id].publishedAt, false)
	e.At = time.Now()
	s.enforce(s.tracked[id], e)
	delete(s.tracked, id)
	s.waiting = nil
	s.mu.Unlock()
	if rc := <-got; rc.Status != Enforced || rc.EnforcedAt == nil {
		t.Fatalf("the wait answered %+v, want enforced", rc)
	}
}
