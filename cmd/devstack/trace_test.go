package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionguard/revoke/internal/telemetry"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestARevocationIsOneTrace: a revocation made with a traceparent is one
// trace from the request through its transaction and the relay's publish
// (its context in the NATS message's headers) to each gateway's apply, so
// an operator sees where a slow revocation spent its time.
func TestARevocationIsOneTrace(t *testing.T) {
	tp, exp := testenv.Tracing(t)
	s := newSystemWith(t, 2, systemOptions{tracer: tp})
	_, p := s.user()
	if !s.acceptedEverywhere(p.AccessToken) {
		t.Fatal("a fresh token is refused")
	}

	// The caller's own span: the revocation's trace is its.
	ctx, client := tp.Tracer("test").Start(t.Context(), "admin clicks revoke", trace.WithSpanKind(trace.SpanKindClient))
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, s.api+"/v1/sessions/"+p.SessionID, nil)
	req.Header.Set("Authorization", "Bearer "+s.admin)
	telemetry.Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	client.End()
	if resp.StatusCode != 204 && resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	s.waitRefusedEverywhere(p.AccessToken)

	traceID := client.SpanContext().TraceID()
	var spans []tracetest.SpanStub
	testenv.Eventually(t, 10*time.Second, func() bool {
		spans = spans[:0]
		for _, sp := range exp.GetSpans() {
			if sp.SpanContext.TraceID() == traceID {
				spans = append(spans, sp)
			}
		}
		// The publish span ends at JetStream's ack, which sessiond may read
		// after the gateways have applied the message.
		return len(named(spans, "apply revocations.v1.session")) == 2 && len(named(spans, "publish revocations.v1.session")) == 1
	}, "the trace never reached both gateways' apply and the publish's ack: %s", tree(spans))
	t.Logf("the trace of one revocation:\n%s", tree(spans))

	server := only(t, spans, "DELETE /v1/sessions/{id}")
	if server.Parent.SpanID() != client.SpanContext().SpanID() || server.SpanKind != trace.SpanKindServer {
		t.Fatalf("the request's span is not the caller's child: %s", tree(spans))
	}
	tx := only(t, spans, "tx revokeSessions")
	publish := only(t, spans, "publish revocations.v1.session")
	for _, sp := range []tracetest.SpanStub{tx, publish} {
		if sp.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Fatalf("%s is not the request's child: %s", sp.Name, tree(spans))
		}
	}
	if publish.SpanKind != trace.SpanKindProducer || publish.StartTime.Before(tx.EndTime) {
		t.Fatalf("the publish (%s) does not follow the commit: %s", publish.SpanKind, tree(spans))
	}
	var gateways []string
	for _, apply := range named(spans, "apply revocations.v1.session") {
		if apply.Parent.SpanID() != publish.SpanContext.SpanID() || apply.SpanKind != trace.SpanKindConsumer {
			t.Fatalf("an apply is not the publish's child: %s", tree(spans))
		}
		gateways = append(gateways, attr(apply, "gateway.name"))
	}
	if distinct := slices.Compact(slices.Sorted(slices.Values(gateways))); len(distinct) != 2 {
		t.Fatalf("the applies are not one per gateway: %v", gateways)
	}
}

func named(spans []tracetest.SpanStub, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range spans {
		if sp.Name == name {
			out = append(out, sp)
		}
	}
	return out
}

func only(t *testing.T, spans []tracetest.SpanStub, name string) tracetest.SpanStub {
	t.Helper()
	got := named(spans, name)
	if len(got) != 1 {
		t.Fatalf("%d spans named %q, want 1: %s", len(got), name, tree(spans))
	}
	return got[0]
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, a := range sp.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// tree draws spans as their parent-child tree, each with when it began
// after the trace's first span and how long it took.
func tree(spans []tracetest.SpanStub) string {
	if len(spans) == 0 {
		return "(no spans)"
	}
	slices.SortFunc(spans, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	t0 := spans[0].StartTime
	ids := map[trace.SpanID]bool{}
	for _, sp := range spans {
		ids[sp.SpanContext.SpanID()] = true
	}
	var b strings.Builder
	var walk func(parent trace.SpanID, root bool, depth int)
	walk = func(parent trace.SpanID, root bool, depth int) {
		for _, sp := range spans {
			if root && ids[sp.Parent.SpanID()] || !root && sp.Parent.SpanID() != parent {
				continue
			}
			extra := ""
			if g := attr(sp, "gateway.name"); g != "" {
				extra = "  (" + g + ")"
			}
			fmt.Fprintf(&b, "\n%s%-*s +%7.3f ms  %7.3f ms%s", strings.Repeat("  ", depth), 40-2*depth, sp.Name,
				float64(sp.StartTime.Sub(t0).Microseconds())/1000, float64(sp.EndTime.Sub(sp.StartTime).Microseconds())/1000, extra)
			walk(sp.SpanContext.SpanID(), false, depth+1)
		}
	}
	walk(trace.SpanID{}, true, 0)
	return b.String()
}
