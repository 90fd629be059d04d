// Package erasure carries out the GDPR erasure pipeline's requests: a
// durable JetStream consumer of identity.v1.user.deleted, shared by the
// sessiond replicas, that hands each request to the session service, acks it
// once the erasure has committed, redelivers it with backoff while the
// database is away, and parks what cannot be carried out on a dead-letter
// subject instead of retrying it for ever.
package erasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/loop"
	"github.com/sessionguard/revoke/internal/natsx"
)

// Consumer settings.
const (
	// ConsumerName is the durable consumer that sessiond replicas share.
	ConsumerName = "sessiond-erasure"
	// DeadLetterSubject is where requests that cannot be carried out are
	// parked (in the IDENTITY stream), with the reason in the
	// Erasure-Error header.
	DeadLetterSubject = "identity.v1.dead.user.deleted"
	// maxDeliver bounds redelivery; its backoff schedule below spans
	// about an hour of database trouble before a request is parked.
	maxDeliver = 30
)

var backoff = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 3 * time.Minute}

// Eraser carries out one request: the session service's Erase.
type Eraser interface {
	Erase(ctx context.Context, req events.UserDeleted) (string, error)
}

// Consumer consumes the erasure requests.
type Consumer struct {
	svc     Eraser
	js      jetstream.JetStream
	log     *slog.Logger
	handled *prometheus.CounterVec
}

// New returns the consumer; its metrics are registered with reg.
func New(svc Eraser, js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) *Consumer {
	e := &Consumer{svc: svc, js: js, log: log, handled: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiond_erasure_requests_total", Help: "identity.v1.user.deleted requests by result (erased, unknown_user, repeated, parked, retried).",
	}, []string{"result"})}
	for _, r := range []string{"erased", "unknown_user", "repeated", "parked", "retried"} {
		e.handled.WithLabelValues(r) // every series from the start, for alerts
	}
	reg.MustRegister(e.handled)
	return e
}

// Run consumes erasure requests until ctx ends. It waits for the IDENTITY
// stream (the relay creates it) and recreates its consumer if needed.
func (e *Consumer) Run(ctx context.Context) {
	loop.Restart(ctx, e.log, "erasure consumer", time.Second, 5*time.Second, natsx.Explaining(e.js.Conn(), e.runOnce))
}

func (e *Consumer) runOnce(ctx context.Context) error {
	cons, err := e.js.CreateOrUpdateConsumer(ctx, events.StreamIdentity, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		FilterSubject: events.SubjectUserDeleted,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    maxDeliver,
		BackOff:       backoff,
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

func (e *Consumer) handle(ctx context.Context, m jetstream.Msg) {
	ev, err := events.Decode(m.Subject(), m.Data())
	if err != nil {
		e.park(ctx, m, err)
		return
	}
	req := ev.(events.UserDeleted)
	res, err := e.svc.Erase(ctx, req)
	if err != nil {
		meta, _ := m.Metadata()
		if meta != nil && meta.NumDelivered >= maxDeliver {
			e.park(ctx, m, err)
			return
		}
		delay := backoff[len(backoff)-1]
		if meta != nil && int(meta.NumDelivered) <= len(backoff) {
			delay = backoff[meta.NumDelivered-1]
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
func (e *Consumer) park(ctx context.Context, m jetstream.Msg, why error) {
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
