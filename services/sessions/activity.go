package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/postgres"
)

// RecordActivity moves the last_active_at of live sessions forward to when a
// gateway last saw them. Reports for unknown or revoked sessions, and stale
// ones, change nothing.
func (s *Service) RecordActivity(ctx context.Context, seen []events.SessionSeen) error {
	ids := make([]string, 0, len(seen))
	times := make([]time.Time, 0, len(seen))
	limit := s.now().Add(time.Minute) // a gateway's clock far ahead must not pin a session on top
	for _, x := range seen {
		if !isUUID(x.SID) {
			continue
		}
		t := x.SeenAt
		if t.After(limit) {
			t = limit
		}
		ids, times = append(ids, x.SID), append(times, t)
	}
	if len(ids) == 0 {
		return nil
	}
	// last_active_at is advisory: losing the latest move of it in a crash
	// costs nothing, so its commit does not wait for the disk. That also
	// releases the row locks sooner, which a revocation of one of these
	// sessions would otherwise wait on for the fsync.
	if err := postgres.ExecUnsynced(ctx, s.pool, `UPDATE sessions s SET last_active_at = x.seen
		FROM unnest($1::uuid[], $2::timestamptz[]) AS x(id, seen)
		WHERE s.id = x.id AND s.revoked_at IS NULL AND s.last_active_at < x.seen`, ids, times); err != nil {
		return fmt.Errorf("%w: record activity: %w", ErrUnavailable, err)
	}
	return nil
}
