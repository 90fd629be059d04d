package outbox

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestSubjectKindsKeepSeriesFew: an org's or a stream's id in a subject
// is one label value for every org.
func TestSubjectKindsKeepSeriesFew(t *testing.T) {
	for in, want := range map[string]string{
		"revocations.v1.session": "revocations.v1.session",
		"signals.v1.org.0b8e2a4e-8f7e-4c1e-9d2a-00000000000b.account": "signals.v1.org.*.account",
		"signals.v1.stream.6f1c2d3e-4b5a-4c6d-8e7f-0123456789ab":      "signals.v1.stream.*",
		"signals.v1.org.*.sessions":                                   "signals.v1.org.*.sessions",
		"a.not-a-uuid-but-36-characters-long-xxxxx.b":                 "a.not-a-uuid-but-36-characters-long-xxxxx.b",
	} {
		if got := subjectKind(in); got != want {
			t.Errorf("subjectKind(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTheOutboxGaugesAreAbsentWhenUnknown: with the database away, the
// depth and age are left out (not -1, which an alert would read as a
// value) and the failed query counted; every error kind and every
// subject given exists from the start.
func TestTheOutboxGaugesAreAbsentWhenUnknown(t *testing.T) {
	pool, err := postgres.Connect(t.Context(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	newMetrics(reg, pool, []string{"revocations.v1.session", "signals.v1.org.*.sessions"})
	samples := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				name := mf.GetName()
				for _, l := range m.GetLabel() {
					name += "{" + l.GetName() + "=" + l.GetValue() + "}"
				}
				switch {
				case m.GetGauge() != nil:
					out[name] = m.GetGauge().GetValue()
				case m.GetCounter() != nil:
					out[name] = m.GetCounter().GetValue()
				}
			}
		}
		return out
	}
	got := samples()
	for _, want := range []string{"outbox_depth", "outbox_oldest_unsent_age_seconds", "outbox_errors_total{kind=publish}", "outbox_errors_total{kind=database}",
		"outbox_errors_total{kind=metrics}", "outbox_published_total{subject=revocations.v1.session}", "outbox_published_total{subject=signals.v1.org.*.sessions}"} {
		if _, ok := got[want]; !ok {
			t.Errorf("no %s at start: %v", want, got)
		}
	}
	pool.Close()
	got = samples()
	if v, ok := got["outbox_depth"]; ok {
		t.Errorf("outbox_depth %v with the database away, want it absent", v)
	}
	if _, ok := got["outbox_oldest_unsent_age_seconds"]; ok {
		t.Error("outbox_oldest_unsent_age_seconds present with the database away")
	}
	// A gather reads the counter while the gauges' queries fail beside it:
	// the next one sees both failures of this one.
	if n := samples()["outbox_errors_total{kind=metrics}"]; n < 2 {
		t.Errorf("failed gauge queries counted %v, want at least 2", n)
	}
}
