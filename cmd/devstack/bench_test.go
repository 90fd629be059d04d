package main

import (
	"net/http"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/internal/edgeprobe"
)

// BenchmarkRevokeToRefusal measures, with 8 gateways subscribed, the time
// from the start of a revoke call to the first 401 for that token at each
// gateway, for two paths side by side:
//
//   - path=sessiond: an admin revokes a session through sessiond; 8
//     gatewayd feeds apply it. Each token is in use (cached at every
//     gateway) before it is revoked.
//   - path=bare: the floor on the same machine (barePath): a durable
//     one-row commit, an asynchronous publish to the same kind of stream,
//     8 ordered consumers and a set lookup behind /v1/check.
//
// b.N is the number of revocations, one at a time:
//
//	REVOKE_TEST_PG_FSYNC=on go test -run '^$' -bench RevokeToRefusal -benchtime 300x -count 4 ./cmd/devstack/
//
// From the call's return (a token cannot be refused before its revocation
// commits), one request goes to every gateway that has not refused the
// token yet, all sent before any answer is read, round after round with no
// pause; a gateway's time is when its 401 is read (internal/edgeprobe says
// why the observer is built so).
func BenchmarkRevokeToRefusal(b *testing.B) {
	const gateways = 8
	b.Run("path=sessiond", func(b *testing.B) {
		s := newSystem(b, gateways)
		var controls []string
		for _, g := range s.gateways {
			controls = append(controls, g.control)
		}
		toks := s.logins(refusalWarmUp + b.N)
		tokens := make([]string, len(toks))
		for i, p := range toks {
			tokens[i] = p.AccessToken
		}
		measureRefusal(b, controls, tokens, func(i int) {
			if code := s.do("DELETE", "/v1/sessions/"+toks[i].SessionID, s.admin, nil, nil); code != http.StatusNoContent {
				b.Fatalf("revoke: %d", code)
			}
		})
	})
	b.Run("path=bare", func(b *testing.B) { benchBarePath(b, gateways) })
}

// benchBarePath measures the bare floor (barePath) through measureRefusal.
func benchBarePath(b *testing.B, gateways int) {
	p := startBarePath(b, gateways)
	ids := make([]string, refusalWarmUp+b.N)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	measureRefusal(b, p.controls, ids, func(i int) { p.revoke(b, ids[i]) })
}

// refusalWarmUp is how many untimed revocations come first: the first
// executions of a statement on a connection parse and plan it, which a
// running service has long done.
const refusalWarmUp = 50

// measureRefusal revokes tokens[i] with revoke(i), one at a time, and
// reports the call's latency and each gateway's time to its first 401.
// The first refusalWarmUp revocations are not timed; b.N follow.
func measureRefusal(b *testing.B, controls, tokens []string, revoke func(i int)) {
	obs, err := edgeprobe.Dial(controls)
	if err != nil {
		b.Fatal(err)
	}
	defer obs.Close()
	// Every token is used twice at every gateway first: a gateway caches a
	// token's verification from its second use on (the first only passes
	// the doorkeeper), as for any token in use.
	for _, tok := range tokens {
		for range 2 {
			if got, err := obs.Once(tok); err != nil || got != len(controls) {
				b.Fatalf("a fresh token: %d of %d gateways accept it (%v)", got, len(controls), err)
			}
		}
	}
	// one revokes the i-th token and returns how long the call took and,
	// per gateway, the time from its start to the token's first 401 there.
	one := func(i int) (time.Duration, []time.Duration) {
		start := time.Now()
		revoke(i)
		call := time.Since(start)
		got, err := obs.UntilRefused(start, tokens[i], 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		return call, got
	}
	for i := range refusalWarmUp {
		one(i)
	}
	rounds0 := obs.Rounds()
	// The warm-up's use of every token makes each gateway report it as
	// active, all in the last seconds before the timer starts; gateways
	// flush their reports every second. Let sessiond record them first, so
	// the timed revocations meet the activity of a steady system, not that
	// burst.
	time.Sleep(2500 * time.Millisecond)
	var lat, api, last []float64
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := refusalWarmUp; i < refusalWarmUp+b.N; i++ {
		call, got := one(i)
		api = append(api, millis(call))
		var slowest time.Duration
		for _, d := range got {
			lat = append(lat, millis(d))
			slowest = max(slowest, d)
		}
		last = append(last, millis(slowest))
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.NumGC-ms0.NumGC), "gcs")
	b.ReportMetric(float64(obs.Rounds()-rounds0)/float64(b.N), "rounds/op")
	reportQuantiles(b, "api-", api)
	reportQuantiles(b, "", lat)
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	// last: per revocation, the time until the slowest gateway refused it,
	// which is what a receipt's "enforced" waits for.
	reportQuantiles(b, "last-", last)
	b.ReportMetric(0, "ns/op")
}

// reportQuantiles sorts v (milliseconds) and reports its median and 99th
// percentile as <prefix>p50-ms and <prefix>p99-ms.
func reportQuantiles(b *testing.B, prefix string, v []float64) {
	sort.Float64s(v)
	b.ReportMetric(v[len(v)/2], prefix+"p50-ms")
	b.ReportMetric(v[len(v)*99/100], prefix+"p99-ms")
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func (s *system) emailOf(p pair) string {
	s.t.Helper()
	var email string
	if err := s.pool().QueryRow(s.t.Context(), "SELECT u.email FROM users u JOIN sessions x ON x.user_id = u.id WHERE x.id = $1", p.SessionID).Scan(&email); err != nil {
		s.t.Fatal(err)
	}
	return email
}
