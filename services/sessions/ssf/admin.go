package ssf

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/services/sessions"
)

// The administrators' view of the streams (the portal's Clients and
// streams page): every stream of the API clients in an admin's scope, how
// its delivery goes, and the two things an admin does to one: ask for a
// verification, and pause, disable or enable it. Both are the
// transmitter's own actions, so the receiver hears of them (a verification
// event without state; a stream-updated event).

// AdminStream is a stream as an administrator sees it.
type AdminStream struct {
	*Stream
	ClientName string
}

// AdminStreams lists the streams of the API clients in p's scope, newest
// first. ErrForbidden for a user who is no admin.
func (t *Transmitter) AdminStreams(ctx context.Context, p sessions.Principal) ([]AdminStream, error) {
	scope, err := sessions.AdminScope(p)
	if err != nil {
		return nil, err
	}
	rows, err := t.pool.Query(ctx, `SELECT `+streamColumns+`, c.name FROM ssf_streams s JOIN api_clients c ON c.id = s.client_id
		WHERE c.deleted_at IS NULL AND ($1::uuid IS NULL OR s.org_id = $1) ORDER BY s.created_at DESC, s.id LIMIT 500`, nullable(scope))
	if err != nil {
		return nil, fmt.Errorf("%w: streams: %w", sessions.ErrUnavailable, err)
	}
	defer rows.Close()
	var out []AdminStream
	for rows.Next() {
		var name string
		st, err := t.scanStream(withExtra{rows, &name})
		if err != nil {
			return nil, fmt.Errorf("%w: streams: %w", sessions.ErrUnavailable, err)
		}
		st.Delivery.AuthorizationHeader = "" // the receiver's secret, not the admin's business
		out = append(out, AdminStream{Stream: st, ClientName: name})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: streams: %w", sessions.ErrUnavailable, err)
	}
	return out, nil
}

// withExtra scans a row of streamColumns followed by more columns.
type withExtra struct {
	pgx.Rows
	extra *string
}

func (w withExtra) Scan(dest ...any) error { return w.Rows.Scan(append(dest, w.extra)...) }

// adminStream checks that stream id is in p's scope. ErrNotFound if not.
func (t *Transmitter) adminStream(ctx context.Context, p sessions.Principal, id string) error {
	scope, err := sessions.AdminScope(p)
	if err != nil {
		return err
	}
	var ok bool
	if validID(id) {
		err = t.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ssf_streams s JOIN api_clients c ON c.id = s.client_id
			WHERE s.id = $1 AND c.deleted_at IS NULL AND ($2::uuid IS NULL OR s.org_id = $2))`, id, nullable(scope)).Scan(&ok)
		if err != nil {
			return fmt.Errorf("%w: stream: %w", sessions.ErrUnavailable, err)
		}
	}
	if !ok {
		return fmt.Errorf("%w: no stream with this id in your scope", sessions.ErrNotFound)
	}
	return nil
}

// AdminVerify sends a verification event on a stream in p's scope, as the
// transmitter may at any time (SSF 1.0 section 8.1.4: without state).
func (t *Transmitter) AdminVerify(ctx context.Context, p sessions.Principal, id string) error {
	if err := t.adminStream(ctx, p, id); err != nil {
		return err
	}
	msg, err := outboxMessage(events.StreamSignal{EventID: uuid.NewString(), StreamID: id, Kind: events.StreamVerification, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	if _, err := t.pool.Exec(ctx, outboxInsert, msg.EventID, msg.Subject, msg.Payload); err != nil {
		return fmt.Errorf("%w: verification: %w", sessions.ErrUnavailable, err)
	}
	t.relay.Committed(context.WithoutCancel(ctx), []outbox.Message{msg})
	return nil
}

// AdminSetStatus pauses, disables or enables a stream in p's scope: the
// transmitter's decision, announced to the receiver (stream-updated).
func (t *Transmitter) AdminSetStatus(ctx context.Context, p sessions.Principal, id, status string) error {
	if err := t.adminStream(ctx, p, id); err != nil {
		return err
	}
	reason := status + " by an administrator of the transmitter"
	if p.UserID != "" {
		reason += " (user " + p.UserID + ")"
	}
	return t.TransmitterStatus(ctx, Status{StreamID: id, Status: status, Reason: reason}, byAdmin)
}
