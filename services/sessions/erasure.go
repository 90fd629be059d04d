package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
)

// Erasure consumer settings.
const (
	// ErasureConsumer is the durable consumer that sessiond replicas share.
	ErasureConsumer = "sessiond-erasure"
	// DeadLetterSubject is where requests that cannot be carried out are
	// parked (in the IDENTITY stream), with the reason in the
	// Erasure-Error header.
	DeadLetterSubject = "identity.v1.dead.user.deleted"
	// erasureMaxDeliver bounds redelivery; its backoff schedule below spans
	// about an hour of database trouble before a request is parked.
	erasureMaxDeliver = 30
)

var erasureBackoff = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 3 * time.Minute}

// Erasure carries out the GDPR erasure pipeline's requests.
type Erasure struct {
	svc     *Service
	js      jetstream.JetStream
	log     *slog.Logger
	handled *prometheus.CounterVec
}

// NewErasure returns the consumer; its metrics are registered with reg.
func NewErasure(svc *Service, js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) *Erasure {
	e := &Erasure{svc: svc, js: js, log: log, handled: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_erasure_requests_total", Help: "identity.v1.user.deleted requests by result (erased, unknown_user, repeated, parked, retried).",
	}, []string{"result"})}
	reg.MustRegister(e.handled)
	return e
}

// Run consumes erasure requests until ctx ends. It waits for the IDENTITY
// stream (the relay creates it) and recreates its consumer if needed.
func (e *Erasure) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := e.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		e.log.WarnContext(ctx, "erasure consumer restarting", "error", fmt.Sprint(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (e *Erasure) runOnce(ctx context.Context) error {
	cons, err := e.js.CreateOrUpdateConsumer(ctx, events.StreamIdentity, jetstream.ConsumerConfig{
		Durable:       ErasureConsumer,
		FilterSubject: events.SubjectUserDeleted,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    erasureMaxDeliver,
		BackOff:       erasureBackoff,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { e.handle(ctx, m) })
	if err != nil {
		return err
	}
	defer cc.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-cc.Closed():
		return errors.New("consumer closed")
	}
}

func (e *Erasure) handle(ctx context.Context, m jetstream.Msg) {
	ev, err := events.Decode(m.Subject(), m.Data())
	if err != nil {
		e.park(ctx, m, err)
		return
	}
	req := ev.(events.UserDeleted)
	res, err := e.svc.Erase(ctx, req)
	if err != nil {
		meta, _ := m.Metadata()
		if meta != nil && meta.NumDelivered >= erasureMaxDeliver {
			e.park(ctx, m, err)
			return
		}
		delay := erasureBackoff[len(erasureBackoff)-1]
		if meta != nil && int(meta.NumDelivered) <= len(erasureBackoff) {
			delay = erasureBackoff[meta.NumDelivered-1]
		}
		e.handled.WithLabelValues("retried").Inc()
		e.log.WarnContext(ctx, "erasure failed; it will be redelivered", "request_event_id", req.EventID, "error", err.Error(), "retry_in", delay.String())
		_ = m.NakWithDelay(delay)
		return
	}
	if err := m.Ack(); err != nil {
		// The erasure committed; a redelivery repeats it harmlessly.
		e.log.WarnContext(ctx, "erasure ack failed", "request_event_id", req.EventID, "error", err.Error())
	}
	e.handled.WithLabelValues(res).Inc()
	e.log.InfoContext(ctx, "erasure carried out", "request_event_id", req.EventID, "user_id", req.UserID, "result", res)
}

// park moves a request that cannot be carried out to the dead-letter
// subject and acknowledges it, so that it is kept and seen, not retried for
// ever.
func (e *Erasure) park(ctx context.Context, m jetstream.Msg, why error) {
	msg := nats.NewMsg(DeadLetterSubject)
	msg.Data = m.Data()
	msg.Header.Set("Erasure-Error", why.Error())
	msg.Header.Set("Original-Subject", m.Subject())
	if meta, err := m.Metadata(); err == nil {
		msg.Header.Set("Original-Sequence", fmt.Sprint(meta.Sequence.Stream))
	}
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		e.log.ErrorContext(ctx, "cannot park an erasure request; it will be redelivered", "error", err.Error())
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	_ = m.Term()
	e.handled.WithLabelValues("parked").Inc()
	e.log.ErrorContext(ctx, "erasure request parked on the dead-letter subject", "subject", DeadLetterSubject, "reason", why.Error())
}

// Erase carries out one erasure request in one transaction: a user-level
// revocation and every session revoked, the user's refresh tokens and
// session metadata (IP, user agent, device name) deleted, the user marked
// erased (password and email gone, so no login or refresh can succeed), an
// audit record naming only the user id, and the sessions.v1.user.erased
// confirmation in the outbox. A repeated request, or one for an unknown
// user, is confirmed again. It returns "erased", "repeated" or
// "unknown_user".
func (s *Service) Erase(ctx context.Context, req events.UserDeleted) (string, error) {
	result := "erased"
	var out outboxRows
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := s.now()
		var orgID string
		var erased bool
		err := tx.QueryRow(ctx, `SELECT org_id, erased_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE`, req.UserID).Scan(&orgID, &erased)
		n := 0
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			result = "unknown_user"
		case err != nil:
			return err
		default:
			if erased {
				result = "repeated"
			}
			if n, err = s.revokeUser(ctx, tx, now, req.UserID, orgID, revocation{reason: events.ReasonErasure}, &out); err != nil {
				return err
			}
			b := &pgx.Batch{}
			b.Queue(`UPDATE sessions SET ip = NULL, user_agent = NULL, device_name = NULL WHERE user_id = $1`, req.UserID)
			b.Queue(`DELETE FROM login_failures WHERE account = (SELECT lower(email) FROM users WHERE id = $1)`, req.UserID)
			// The email goes to NULL, not to a tombstone: a tombstone has a form
			// anyone can predict, and a user created with it first would make
			// this statement fail on the unique index for ever.
			b.Queue(`UPDATE users SET erased_at = COALESCE(erased_at, $2), password_hash = NULL,
				email = NULL, updated_at = $2 WHERE id = $1`, req.UserID, now)
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		if err := writeAudit(ctx, tx, auditEntry{Action: ActionUserErased, TargetUserID: req.UserID, OrgID: orgID, Reason: string(events.ReasonErasure),
			Detail: map[string]any{"request_event_id": req.EventID, "sessions_revoked": n, "result": result}}); err != nil {
			return err
		}
		conf := events.UserErased{EventID: uuid.NewString(), RequestEventID: req.EventID, UserID: req.UserID, SessionsRevoked: n, CompletedAt: now.UTC()}
		b := &pgx.Batch{}
		if err := out.queue(b, conf); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return "", fmt.Errorf("%w: erase: %w", ErrUnavailable, err)
	}
	s.committed(ctx, out)
	return result, nil
}
