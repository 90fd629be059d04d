package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/outbox"
	"github.com/sessionguard/revoke/services/sessions"
)

// Delivery methods (SSF 1.0 section 6.1).
const (
	MethodPush = "urn:ietf:rfc:8935"
	MethodPoll = "urn:ietf:rfc:8936"
)

// Stream statuses (SSF 1.0 section 8.1.2).
const (
	StatusEnabled  = "enabled"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// Delivery is a stream's delivery method and its parameters. The push
// receiver's authorization header is its secret: it is kept sealed and
// never shown again, to the receiver or anyone.
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"-"`
}

// DeliveryInput is the delivery of a request. An update that names the
// same method and endpoint without authorization_header keeps the one the
// stream has (it is never shown, so it cannot be sent back); "" removes it.
type DeliveryInput struct {
	Method              string  `json:"method"`
	EndpointURL         string  `json:"endpoint_url"`
	AuthorizationHeader *string `json:"authorization_header"`
}

// Stream is a stream's configuration as SSF 1.0 section 8.1.1 shows it to
// its receiver, with what the transmitter keeps beside it (not shown).
type Stream struct {
	ID                      string   `json:"stream_id"`
	Iss                     string   `json:"iss"`
	Aud                     string   `json:"aud"`
	EventsSupported         []string `json:"events_supported"`
	EventsRequested         []string `json:"events_requested,omitempty"`
	EventsDelivered         []string `json:"events_delivered"`
	Delivery                Delivery `json:"delivery"`
	MinVerificationInterval int      `json:"min_verification_interval"`
	Description             string   `json:"description,omitempty"`

	ClientID  string    `json:"-"`
	OrgID     *string   `json:"-"` // nil: every org's subjects
	Status    string    `json:"-"`
	Reason    string    `json:"-"`
	StatusBy  string    `json:"-"`
	CreatedAt time.Time `json:"-"`
	UpdatedAt time.Time `json:"-"`
	// Delivery's record, for the status and the portal.
	LastVerificationAt *time.Time `json:"-"`
	LastDeliveryAt     *time.Time `json:"-"`
	LastError          string     `json:"-"`
	LastErrorAt        *time.Time `json:"-"`
	FailingSince       *time.Time `json:"-"`
}

// Status is a stream's status (SSF 1.0 section 8.1.2.1).
type Status struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// StreamInput is a create, update (PATCH) or replace (PUT) request: every
// field nil when absent, so an update changes only what it names. The
// transmitter-supplied fields may be sent back, but must match.
type StreamInput struct {
	StreamID        *string          `json:"stream_id"`
	EventsRequested *[]string        `json:"events_requested"`
	Delivery        *DeliveryInput   `json:"delivery"`
	Description     *string          `json:"description"`
	Iss             *string          `json:"iss"`
	Aud             *json.RawMessage `json:"aud"`
	EventsSupported *[]string        `json:"events_supported"`
	EventsDelivered *[]string        `json:"events_delivered"`
	MinVerification *int             `json:"min_verification_interval"`
}

const streamColumns = `s.id::text, s.client_id::text, s.org_id::text, s.aud, COALESCE(s.description, ''), s.events_requested, s.delivery_method,
	COALESCE(s.endpoint_url, ''), s.authorization_header, s.min_verification_interval, s.status, COALESCE(s.status_reason, ''), s.status_by,
	s.created_at, s.updated_at, s.last_verification_at, s.last_delivery_at, COALESCE(s.last_error, ''), s.last_error_at, s.failing_since`

// scanStream reads a row of streamColumns.
func (t *Transmitter) scanStream(row pgx.Row) (*Stream, error) {
	var (
		st     Stream
		sealed []byte
	)
	err := row.Scan(&st.ID, &st.ClientID, &st.OrgID, &st.Aud, &st.Description, &st.EventsRequested, &st.Delivery.Method,
		&st.Delivery.EndpointURL, &sealed, &st.MinVerificationInterval, &st.Status, &st.Reason, &st.StatusBy,
		&st.CreatedAt, &st.UpdatedAt, &st.LastVerificationAt, &st.LastDeliveryAt, &st.LastError, &st.LastErrorAt, &st.FailingSince)
	if err != nil {
		return nil, err
	}
	if st.Delivery.AuthorizationHeader, err = t.openHeader(st.ID, sealed); err != nil {
		return nil, err
	}
	t.complete(&st)
	return &st, nil
}

// complete fills in what the transmitter derives: iss, the event types
// and, for poll, the endpoint.
func (t *Transmitter) complete(st *Stream) {
	st.Iss = t.cfg.Issuer
	st.EventsSupported = eventsSupported
	st.EventsDelivered = delivered(st.EventsRequested)
	if st.Delivery.Method == MethodPoll {
		st.Delivery.EndpointURL = t.pollURL(st.ID)
	}
}

// delivered is what a stream that requested requested carries: the
// supported types it asked for (SSF: the ones not understood are
// ignored); every supported type when it asked for none.
func delivered(requested []string) []string {
	if len(requested) == 0 {
		return eventsSupported
	}
	var out []string
	for _, e := range eventsSupported {
		if slices.Contains(requested, e) {
			out = append(out, e)
		}
	}
	return out
}

// errNoStream is the one answer for a stream that is not the client's.
var errNoStream = fmt.Errorf("%w: no stream with this stream_id for this receiver", sessions.ErrNotFound)

// stream reads stream id of client c. errNoStream when it is not c's.
func (t *Transmitter) stream(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, c sessions.Client, id string, lock bool) (*Stream, error) {
	if !validID(id) {
		return nil, errNoStream
	}
	sql := `SELECT ` + streamColumns + ` FROM ssf_streams s WHERE s.id = $1 AND s.client_id = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	st, err := t.scanStream(q.QueryRow(ctx, sql, id, c.ID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoStream
	}
	if err != nil {
		return nil, fmt.Errorf("%w: stream: %w", sessions.ErrUnavailable, err)
	}
	return st, nil
}

// validID reports whether id can be a stream id (a UUID).
func validID(id string) bool { return events.IsUUID(id) }

// CreateStream creates a stream for receiver c (SSF 1.0 section
// 8.1.1.1): a delivery it names (none means poll), the event types it
// requests. ErrInvalid for a bad request, ErrConflict past the streams a
// receiver may hold.
func (t *Transmitter) CreateStream(ctx context.Context, c sessions.Client, in StreamInput) (*Stream, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	st := &Stream{ID: uuid.NewString(), ClientID: c.ID, OrgID: c.OrgID, Aud: c.ID, Status: StatusEnabled, StatusBy: "receiver",
		MinVerificationInterval: int(t.cfg.VerificationInterval / time.Second), CreatedAt: now, UpdatedAt: now}
	d := DeliveryInput{Method: MethodPoll}
	if in.Delivery != nil {
		d = *in.Delivery
	}
	if err := t.receiverFields(st, in.EventsRequested, &d, in.Description, true); err != nil {
		return nil, err
	}
	sealed, err := t.sealHeader(st.ID, st.Delivery.AuthorizationHeader)
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		// The client's row lock counts its streams one creation at a time.
		var live bool
		if err := tx.QueryRow(ctx, `SELECT deleted_at IS NULL FROM api_clients WHERE id = $1 FOR UPDATE`, c.ID).Scan(&live); err != nil || !live {
			return errors.Join(err, fmt.Errorf("%w: the client no longer exists", sessions.ErrUnauthorized))
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ssf_streams WHERE client_id = $1`, c.ID).Scan(&n); err != nil {
			return err
		}
		if n >= t.cfg.MaxStreamsPerClient {
			return fmt.Errorf("%w: a receiver holds at most %d streams; delete one first", sessions.ErrConflict, t.cfg.MaxStreamsPerClient)
		}
		_, err := tx.Exec(ctx, `INSERT INTO ssf_streams (id, client_id, org_id, aud, description, events_requested, delivery_method, endpoint_url,
				authorization_header, min_verification_interval, created_at, updated_at)
			VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, $7, NULLIF($8, ''), $9, $10, $11, $11)`,
			st.ID, c.ID, c.OrgID, st.Aud, st.Description, st.EventsRequested, st.Delivery.Method, pushURL(st), sealed, st.MinVerificationInterval, now)
		return err
	})
	if err != nil {
		return nil, sessions.DomainOr(err, "create stream")
	}
	t.settle(ctx)
	t.complete(st)
	t.changed()
	return st, nil
}

// settle waits, up to 5 s, until every transaction that began before now
// has ended. A revocation writes its signal only when a stream takes it,
// and decides that from a snapshot: one that took its snapshot before a
// stream was committed, and commits after, writes none. Once the
// transactions older than the stream are done, everything that commits
// after the answer of the stream's creation reaches it.
func (t *Transmitter) settle(ctx context.Context) {
	deadline := time.Now().Add(5 * time.Second)
	var cutoff time.Time
	if err := t.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&cutoff); err != nil {
		return
	}
	for time.Now().Before(deadline) {
		var n int
		err := t.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
			AND backend_type = 'client backend' AND state <> 'idle' AND xact_start < $1`, cutoff).Scan(&n)
		if err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pushURL is the endpoint to keep: a push stream's; a poll stream's is
// derived.
func pushURL(st *Stream) string {
	if st.Delivery.Method == MethodPush {
		return st.Delivery.EndpointURL
	}
	return ""
}

// receiverFields checks and sets the receiver-supplied fields on st. On
// create (and replace) every absent field takes its default; events nil
// keeps st's on update.
func (t *Transmitter) receiverFields(st *Stream, requested *[]string, d *DeliveryInput, description *string, all bool) error {
	if requested != nil {
		if len(*requested) == 0 {
			return sessions.Invalid("events_requested must not be empty (SSF 1.0 section 8.1.1)")
		}
		if len(*requested) > 50 {
			return sessions.Invalid("events_requested: at most 50 event types")
		}
		if len(delivered(*requested)) == 0 {
			return sessions.Invalid("events_requested: none of the event types is supported here; supported are %s", strings.Join(eventsSupported, ", "))
		}
		st.EventsRequested = slices.Clone(*requested)
	} else if all {
		st.EventsRequested = []string{} // every supported type
	}
	if d != nil {
		switch d.Method {
		case MethodPush:
			if err := t.checkPushURL(d.EndpointURL); err != nil {
				return err
			}
		case MethodPoll:
			if d.EndpointURL != "" && d.EndpointURL != t.pollURL(st.ID) {
				return sessions.Invalid("delivery.endpoint_url: the transmitter sets a poll stream's endpoint; leave it out")
			}
		case "":
			return sessions.Invalid("delivery.method is required: %s (push) or %s (poll)", MethodPush, MethodPoll)
		default:
			return sessions.Invalid("delivery.method %q is not supported: %s (push) or %s (poll)", d.Method, MethodPush, MethodPoll)
		}
		header := ""
		switch {
		case d.AuthorizationHeader != nil:
			header = *d.AuthorizationHeader
		case d.Method == st.Delivery.Method && d.EndpointURL == st.Delivery.EndpointURL:
			header = st.Delivery.AuthorizationHeader // kept: see DeliveryInput
		}
		if len(header) > 4096 || strings.ContainsAny(header, "\r\n\x00") || !utf8.ValidString(header) {
			return sessions.Invalid("delivery.authorization_header must be one header value of at most 4096 bytes")
		}
		if d.Method == MethodPoll && header != "" {
			return sessions.Invalid("delivery.authorization_header is for push streams only")
		}
		st.Delivery = Delivery{Method: d.Method, EndpointURL: d.EndpointURL, AuthorizationHeader: header}
	}
	if description != nil {
		if len(*description) > 1000 || !utf8.ValidString(*description) || strings.ContainsRune(*description, 0) {
			return sessions.Invalid("description must be text of at most 1000 bytes")
		}
		st.Description = *description
	} else if all {
		st.Description = ""
	}
	return nil
}

// checkPushURL refuses a push endpoint that is not an absolute https URL
// (http only where Config.AllowHTTP says so).
func (t *Transmitter) checkPushURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return sessions.Invalid("delivery.endpoint_url is required for push delivery")
	case err != nil || u.Hostname() == "" || u.User != nil || u.Fragment != "" || len(raw) > 2048:
		return sessions.Invalid("delivery.endpoint_url must be an absolute URL without credentials or fragment, at most 2048 bytes")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && t.cfg.AllowHTTP:
		return nil
	case u.Scheme == "http":
		return sessions.Invalid("delivery.endpoint_url must be https (the CAEP interoperability profile requires TLS)")
	default:
		return sessions.Invalid("delivery.endpoint_url must be an https URL")
	}
}

// Streams lists receiver c's streams (SSF 1.0 section 8.1.1.2, no
// stream_id).
func (t *Transmitter) Streams(ctx context.Context, c sessions.Client) ([]*Stream, error) {
	rows, err := t.pool.Query(ctx, `SELECT `+streamColumns+` FROM ssf_streams s WHERE s.client_id = $1 ORDER BY s.created_at, s.id`, c.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: streams: %w", sessions.ErrUnavailable, err)
	}
	defer rows.Close()
	out := []*Stream{}
	for rows.Next() {
		st, err := t.scanStream(rows)
		if err != nil {
			return nil, fmt.Errorf("%w: streams: %w", sessions.ErrUnavailable, err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: streams: %w", sessions.ErrUnavailable, err)
	}
	return out, nil
}

// Stream reads one of c's streams. errNoStream (ErrNotFound) otherwise.
func (t *Transmitter) Stream(ctx context.Context, c sessions.Client, id string) (*Stream, error) {
	return t.stream(ctx, t.pool, c, id, false)
}

// UpdateStream is PATCH (replace false: what the request names changes)
// or PUT (replace true: what it leaves out returns to its default) of a
// stream (SSF 1.0 sections 8.1.1.3, 8.1.1.4). The transmitter-supplied
// fields may be sent, but must match. ErrInvalid, errNoStream.
func (t *Transmitter) UpdateStream(ctx context.Context, c sessions.Client, in StreamInput, replace bool) (*Stream, error) {
	if in.StreamID == nil {
		return nil, sessions.Invalid("stream_id is required")
	}
	var st *Stream
	err := pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		var err error
		if st, err = t.stream(ctx, tx, c, *in.StreamID, true); err != nil {
			return err
		}
		if err := t.sameTransmitterFields(st, in); err != nil {
			return err
		}
		d := in.Delivery
		if d == nil && replace {
			return sessions.Invalid("delivery is required in a replacement: a stream always has one")
		}
		// Switching between push and poll keeps the stream's place: its
		// lanes go on from what JetStream has not handed out, and a stream
		// that turns to push first pushes what waits to be polled.
		if err := t.receiverFields(st, in.EventsRequested, d, in.Description, replace); err != nil {
			return err
		}
		sealed, err := t.sealHeader(st.ID, st.Delivery.AuthorizationHeader)
		if err != nil {
			return err
		}
		st.UpdatedAt = time.Now().UTC().Truncate(time.Microsecond)
		_, err = tx.Exec(ctx, `UPDATE ssf_streams SET description = NULLIF($2, ''), events_requested = $3, delivery_method = $4,
				endpoint_url = NULLIF($5, ''), authorization_header = $6, updated_at = $7 WHERE id = $1`,
			st.ID, st.Description, st.EventsRequested, st.Delivery.Method, pushURL(st), sealed, st.UpdatedAt)
		return err
	})
	if err != nil {
		return nil, sessions.DomainOr(err, "update stream")
	}
	t.complete(st)
	t.changed()
	return st, nil
}

// sameTransmitterFields refuses an update whose transmitter-supplied
// fields differ from the stream's (SSF 1.0 section 8.1.1.3).
func (t *Transmitter) sameTransmitterFields(st *Stream, in StreamInput) error {
	if in.Iss != nil && *in.Iss != t.cfg.Issuer {
		return sessions.Invalid("iss is the transmitter's (%s) and cannot be changed", t.cfg.Issuer)
	}
	if in.Aud != nil {
		var one string
		var many []string
		if json.Unmarshal(*in.Aud, &one) == nil {
			many = []string{one}
		} else if json.Unmarshal(*in.Aud, &many) != nil {
			return sessions.Invalid("aud must be a string or an array of strings")
		}
		if len(many) != 1 || many[0] != st.Aud {
			return sessions.Invalid("aud cannot be updated (SSF 1.0 section 8.1.1)")
		}
	}
	sameSet := func(a, b []string) bool {
		return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
	}
	if in.EventsSupported != nil && !sameSet(*in.EventsSupported, eventsSupported) {
		return sessions.Invalid("events_supported is the transmitter's and cannot be changed")
	}
	if in.EventsDelivered != nil && !sameSet(*in.EventsDelivered, delivered(st.EventsRequested)) {
		return sessions.Invalid("events_delivered does not match the stream's; it follows from events_requested")
	}
	if in.MinVerification != nil && *in.MinVerification != st.MinVerificationInterval {
		return sessions.Invalid("min_verification_interval is the transmitter's (%d) and cannot be changed", st.MinVerificationInterval)
	}
	return nil
}

// DeleteStream deletes one of c's streams, with its subjects and its
// undelivered SETs (SSF 1.0 section 8.1.1.5). errNoStream.
func (t *Transmitter) DeleteStream(ctx context.Context, c sessions.Client, id string) error {
	if !validID(id) {
		return errNoStream
	}
	tag, err := t.pool.Exec(ctx, `DELETE FROM ssf_streams WHERE id = $1 AND client_id = $2`, id, c.ID)
	if err != nil {
		return fmt.Errorf("%w: delete stream: %w", sessions.ErrUnavailable, err)
	}
	if tag.RowsAffected() == 0 {
		return errNoStream
	}
	t.dropConsumers(ctx, id)
	t.changed()
	return nil
}

// StreamStatus is a stream's status (SSF 1.0 section 8.1.2.1).
func (t *Transmitter) StreamStatus(ctx context.Context, c sessions.Client, id string) (Status, error) {
	st, err := t.stream(ctx, t.pool, c, id, false)
	if err != nil {
		return Status{}, err
	}
	return Status{StreamID: st.ID, Status: st.Status, Reason: st.Reason}, nil
}

// SetStreamStatus is the receiver's change of a stream's status (SSF 1.0
// section 8.1.2.2): paused holds its SETs, disabled drops them, enabled
// delivers again, the held ones first. ErrInvalid, errNoStream.
func (t *Transmitter) SetStreamStatus(ctx context.Context, c sessions.Client, in Status) (Status, error) {
	if err := checkStatus(in); err != nil {
		return Status{}, err
	}
	err := pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		st, err := t.stream(ctx, tx, c, in.StreamID, true)
		if err != nil {
			return err
		}
		if st.StatusBy == byAdmin && st.Status != StatusEnabled {
			// A receiver may enable a stream the transmitter paused for its
			// failures, not one an administrator stopped.
			return sessions.Forbidden("an administrator of the transmitter set this stream %s; ask them to enable it", st.Status)
		}
		return t.writeStatus(ctx, tx, in, byReceiver)
	})
	if err != nil {
		return Status{}, sessions.DomainOr(err, "stream status")
	}
	t.changed()
	return in, nil
}

// checkStatus refuses a status change that is not one.
func checkStatus(in Status) error {
	switch in.Status {
	case StatusEnabled, StatusPaused, StatusDisabled:
	case "":
		return sessions.Invalid("status is required: enabled, paused or disabled")
	default:
		return sessions.Invalid("status %q is not enabled, paused or disabled", in.Status)
	}
	if len(in.Reason) > 500 || !utf8.ValidString(in.Reason) || strings.ContainsRune(in.Reason, 0) {
		return sessions.Invalid("reason must be text of at most 500 bytes")
	}
	return nil
}

// writeStatus sets a stream's status inside tx, by "receiver" or
// "transmitter"; disabling drops the SETs that wait to be polled.
func (t *Transmitter) writeStatus(ctx context.Context, tx pgx.Tx, in Status, by string) error {
	b := &pgx.Batch{}
	b.Queue(`UPDATE ssf_streams SET status = $2, status_reason = NULLIF($3, ''), status_by = $4, updated_at = $5,
			failing_since = CASE WHEN $2 = 'enabled' THEN NULL ELSE failing_since END WHERE id = $1`,
		in.StreamID, in.Status, in.Reason, by, time.Now().UTC())
	if in.Status == StatusDisabled {
		b.Queue(`DELETE FROM ssf_poll_sets WHERE stream_id = $1`, in.StreamID)
	}
	return tx.SendBatch(ctx, b).Close()
}

// Who set a stream's status.
const (
	byReceiver    = "receiver"
	byTransmitter = "transmitter" // its push failing too long
	byAdmin       = "admin"       // an administrator of the transmitter
)

// TransmitterStatus is a status change the transmitter makes (by
// byTransmitter or byAdmin): it is set and announced to the receiver with
// a stream-updated event in one transaction (SSF 1.0 section 8.1.5), on the
// control lane, which goes on whatever the status.
func (t *Transmitter) TransmitterStatus(ctx context.Context, in Status, by string) error {
	if err := checkStatus(in); err != nil {
		return err
	}
	ev := events.StreamSignal{EventID: uuid.NewString(), StreamID: in.StreamID, Kind: events.StreamUpdated, Status: in.Status,
		Reason: in.Reason, At: time.Now().UTC()}
	msg, err := outboxMessage(ev)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		if err := t.writeStatus(ctx, tx, in, by); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, outboxInsert, msg.EventID, msg.Subject, msg.Payload)
		return err
	})
	if err != nil {
		return sessions.DomainOr(err, "stream status")
	}
	t.relay.Committed(context.WithoutCancel(ctx), []outbox.Message{msg})
	t.changed()
	return nil
}

// outboxInsert writes an outboxMessage's row ($1 event_id, $2 subject, $3
// payload); the relay takes it once its transaction commits.
const outboxInsert = `INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)`

// outboxMessage encodes a signal as an outbox row.
func outboxMessage(ev events.Event) (outbox.Message, error) {
	p, err := events.Encode(ev)
	if err != nil {
		return outbox.Message{}, err
	}
	return outbox.Message{EventID: ev.ID(), Subject: ev.Subject(), Payload: p}, nil
}

// Verify asks for a verification event on one of c's streams, echoing
// state (SSF 1.0 section 8.1.4.2). sessions.ErrTooSoon within the stream's
// min_verification_interval of the last one; ErrInvalid, errNoStream.
func (t *Transmitter) Verify(ctx context.Context, c sessions.Client, id, state string) error {
	if len(state) > 1000 || !utf8.ValidString(state) || strings.ContainsRune(state, 0) {
		return sessions.Invalid("state must be text of at most 1000 bytes")
	}
	now := time.Now().UTC()
	ev := events.StreamSignal{EventID: uuid.NewString(), StreamID: id, Kind: events.StreamVerification, State: state, At: now}
	var msg outbox.Message
	err := pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		st, err := t.stream(ctx, tx, c, id, true)
		if err != nil {
			return err
		}
		min := time.Duration(st.MinVerificationInterval) * time.Second
		if st.LastVerificationAt != nil && now.Sub(*st.LastVerificationAt) < min {
			return fmt.Errorf("%w: at most one verification every %d seconds (min_verification_interval)", sessions.ErrTooSoon, st.MinVerificationInterval)
		}
		if msg, err = outboxMessage(ev); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE ssf_streams SET last_verification_at = $2 WHERE id = $1`, id, now)
		b.Queue(outboxInsert, msg.EventID, msg.Subject, msg.Payload)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return sessions.DomainOr(err, "verification")
	}
	t.relay.Committed(context.WithoutCancel(ctx), []outbox.Message{msg})
	return nil
}

// AddSubject adds a subject back to one of c's streams, or (every
// subject being in a stream by default) makes sure it stays in when a
// broader subject is removed (SSF 1.0 section 8.1.3.2). Whether the
// subject exists is not told: a receiver of one org learns nothing of
// another's users. ErrInvalid, errNoStream.
func (t *Transmitter) AddSubject(ctx context.Context, c sessions.Client, id string, raw json.RawMessage, verified *bool) error {
	return t.chooseSubject(ctx, c, id, raw, true, verified)
}

// RemoveSubject leaves a subject out of one of c's streams (SSF 1.0
// section 8.1.3.3). ErrInvalid, errNoStream.
func (t *Transmitter) RemoveSubject(ctx context.Context, c sessions.Client, id string, raw json.RawMessage) error {
	return t.chooseSubject(ctx, c, id, raw, false, nil)
}

// maxSubjects bounds the subjects a stream keeps choices for.
const maxSubjects = 10000

func (t *Transmitter) chooseSubject(ctx context.Context, c sessions.Client, id string, raw json.RawMessage, included bool, verified *bool) error {
	s, err := parseSubject(raw)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		if _, err := t.stream(ctx, tx, c, id, true); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ssf_subjects WHERE stream_id = $1`, id).Scan(&n); err != nil {
			return err
		}
		if n >= maxSubjects {
			return sessions.Invalid("a stream keeps at most %d added or removed subjects", maxSubjects)
		}
		now := time.Now().UTC()
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO ssf_subjects (stream_id, key, subject, included, verified, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (stream_id, key) DO UPDATE SET subject = EXCLUDED.subject, included = EXCLUDED.included, verified = EXCLUDED.verified,
				updated_at = EXCLUDED.updated_at`, id, s.key(), mustJSON(s), included, verified, now)
		b.Queue(`UPDATE ssf_streams SET updated_at = $2 WHERE id = $1`, id, now)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return sessions.DomainOr(err, "subject")
	}
	t.changed()
	return nil
}

// choices loads a stream's subject choices.
func (t *Transmitter) choices(ctx context.Context, id string) (subjectChoices, error) {
	rows, err := t.pool.Query(ctx, `SELECT subject, included FROM ssf_subjects WHERE stream_id = $1`, id)
	if err != nil {
		return subjectChoices{}, err
	}
	defer rows.Close()
	var c subjectChoices
	for rows.Next() {
		var (
			raw      []byte
			included bool
		)
		if err := rows.Scan(&raw, &included); err != nil {
			return subjectChoices{}, err
		}
		var s subject
		if err := json.Unmarshal(raw, &s); err != nil {
			return subjectChoices{}, fmt.Errorf("ssf: stream %s: a stored subject does not decode: %w", id, err)
		}
		if included {
			c.added = append(c.added, s)
		} else {
			c.removed = append(c.removed, s)
		}
	}
	return c, rows.Err()
}
