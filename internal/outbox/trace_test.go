package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/telemetry"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestPublishesContinueTheRowsTrace: traced, a row the sweep publishes is a
// producer span, the child of the traceparent the row was written with,
// ended at JetStream's ack with the stream sequence; the fast path's span is
// the child of the committing request's; either way the message's headers
// carry the publish's context on. Untraced, no header is added.
func TestPublishesContinueTheRowsTrace(t *testing.T) {
	f := newFixture(t)
	tp, exp := testenv.Tracing(t)
	cfg := DefaultConfig()
	cfg.Tracer = tp
	r := New(f.pool, f.js, cfg, prometheus.NewRegistry(), quiet)

	// The sweep: the row's traceparent, from a request long gone.
	reqCtx, request := tp.Tracer("test").Start(t.Context(), "DELETE /v1/sessions/{id}")
	request.End()
	ev := events.SessionRevoked{EventID: uuid.NewString(), SID: uuid.NewString(), Sub: uuid.NewString(), Org: uuid.NewString(),
		Reason: events.ReasonAdminRevoke, RevokedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(6 * time.Minute).UTC()}
	p, _ := events.Encode(ev)
	if _, err := f.pool.Exec(t.Context(), `INSERT INTO outbox (event_id, subject, payload, traceparent) VALUES ($1, $2, $3, $4)`,
		ev.EventID, ev.Subject(), p, telemetry.Traceparent(reqCtx)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.RelayOnce(t.Context()); err != nil || n != 1 {
		t.Fatalf("relayed %d: %v", n, err)
	}
	sweep := f.publishSpan(t, exp, ev.EventID)
	if sweep.Parent.SpanID() != request.SpanContext().SpanID() || sweep.SpanKind != trace.SpanKindProducer || sweep.EndTime.IsZero() {
		t.Fatalf("sweep span: parent %s, kind %s; want the request %s", sweep.Parent.SpanID(), sweep.SpanKind, request.SpanContext().SpanID())
	}
	f.wantTraceparent(t, 1, sweep.SpanContext)

	// The fast path: the committing request's context itself. The relay
	// runs only after the hand-over: its first sweep leaves the row, which
	// is in flight, to the fast path, whose acks it then reads.
	ctx, live := tp.Tracer("test").Start(t.Context(), "POST /v1/revocations")
	ev2 := ev
	ev2.EventID, ev2.SID = uuid.NewString(), uuid.NewString()
	p2, _ := events.Encode(ev2)
	if _, err := f.pool.Exec(t.Context(), `INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)`, ev2.EventID, ev2.Subject(), p2); err != nil {
		t.Fatal(err)
	}
	r.Committed(ctx, []Message{{EventID: ev2.EventID, Subject: ev2.Subject(), Payload: p2}})
	live.End()
	f.run(t, r)
	var fast tracetest.SpanStub
	testenv.Eventually(t, 10*time.Second, func() bool { fast = f.publishSpanOrZero(exp, ev2.EventID); return !fast.EndTime.IsZero() }, "no fast-path publish span")
	if fast.Parent.SpanID() != live.SpanContext().SpanID() {
		t.Fatalf("fast-path span: parent %s, want %s", fast.Parent.SpanID(), live.SpanContext().SpanID())
	}
	f.wantTraceparent(t, 2, fast.SpanContext)
}

func (f *fixture) publishSpanOrZero(exp *tracetest.InMemoryExporter, eventID string) tracetest.SpanStub {
	for _, sp := range exp.GetSpans() {
		for _, a := range sp.Attributes {
			if a.Key == "messaging.message.id" && a.Value.AsString() == eventID {
				return sp
			}
		}
	}
	return tracetest.SpanStub{}
}

func (f *fixture) publishSpan(t *testing.T, exp *tracetest.InMemoryExporter, eventID string) tracetest.SpanStub {
	t.Helper()
	sp := f.publishSpanOrZero(exp, eventID)
	if sp.Name != "publish revocations.v1.session" {
		t.Fatalf("no publish span for %s (got %q)", eventID, sp.Name)
	}
	return sp
}

// wantTraceparent: the stream's message at seq carries sc as its parent.
func (f *fixture) wantTraceparent(t *testing.T, seq uint64, sc trace.SpanContext) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, events.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	got := trace.SpanContextFromContext(telemetry.WithTraceparent(ctx, m.Header.Get("traceparent")))
	if got.SpanID() != sc.SpanID() || got.TraceID() != sc.TraceID() {
		t.Fatalf("message %d: traceparent %q, want span %s of trace %s", seq, m.Header.Get("traceparent"), sc.SpanID(), sc.TraceID())
	}
}
