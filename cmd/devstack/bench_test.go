package main

import (
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/sessionguard/revoke/internal/edgeprobe"
)

// BenchmarkRevokeToRefusal measures, with 8 gateways subscribed, the time
// from the start of an admin's revoke call to the first 401 for that token
// at each gateway. Each token is in use (cached at every gateway) before it
// is revoked. b.N is the number of revocations, one at a time:
//
//	REVOKE_TEST_PG_FSYNC=on go test -run '^$' -bench RevokeToRefusal -benchtime 300x ./cmd/devstack/
//
// From the call's return (a token cannot be refused before its revocation
// commits), one request goes to every gateway that has not refused the
// token yet, all sent before any answer is read, every 100 µs; a gateway's
// time is when its 401 is read (internal/edgeprobe says why the observer
// is built so).
func BenchmarkRevokeToRefusal(b *testing.B) {
	const gateways = 8
	s := newSystem(b, gateways)
	_, first := s.user()
	email := s.emailOf(first)
	// A few untimed revocations first: the first executions of a statement
	// on a connection parse and plan it, which a running sessiond has long
	// done.
	const warmUp = 50
	tokens := make([]pair, warmUp+b.N)
	for i := range tokens {
		tokens[i] = s.login(email, "password-1")
		// Twice: a gateway caches a token's verification from its second
		// use on (the first only passes the doorkeeper), as for any token
		// in use.
		for range 2 {
			for _, g := range s.gateways {
				if check(b, g, tokens[i].AccessToken) != 200 {
					b.Fatal("fresh token refused")
				}
			}
		}
	}
	var controls []string
	for _, g := range s.gateways {
		controls = append(controls, g.control)
	}
	obs, err := edgeprobe.Dial(controls)
	if err != nil {
		b.Fatal(err)
	}
	defer obs.Close()
	// revoke revokes tok's session and returns how long the call took and,
	// per gateway, the time from its start to the token's first 401 there.
	revoke := func(tok pair) (time.Duration, []time.Duration) {
		start := time.Now()
		if code := s.do("DELETE", "/v1/sessions/"+tok.SessionID, s.admin, nil, nil); code != 204 {
			b.Fatalf("revoke: %d", code)
		}
		call := time.Since(start)
		got, err := obs.UntilRefused(start, tok.AccessToken, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		return call, got
	}
	for _, tok := range tokens[:warmUp] {
		revoke(tok)
	}
	tokens, rounds0 := tokens[warmUp:], obs.Rounds()
	// The warm-up's use of every token makes each gateway report it as
	// active, all in the last seconds before the timer starts; gateways
	// flush their reports every second. Let sessiond record them first, so
	// the timed revocations meet the activity of a steady system, not that
	// burst.
	time.Sleep(2500 * time.Millisecond)
	var lat, api []float64
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		call, got := revoke(tokens[i])
		api = append(api, float64(call.Microseconds())/1000)
		for _, d := range got {
			lat = append(lat, float64(d.Microseconds())/1000)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.NumGC-ms0.NumGC), "gcs")
	b.ReportMetric(float64(obs.Rounds()-rounds0)/float64(b.N), "rounds/op")
	sort.Float64s(lat)
	sort.Float64s(api)
	b.ReportMetric(api[len(api)/2], "api-p50-ms")
	b.ReportMetric(api[len(api)*99/100], "api-p99-ms")
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(0, "ns/op")
}

func (s *system) emailOf(p pair) string {
	s.t.Helper()
	var email string
	if err := s.pool().QueryRow(s.t.Context(), "SELECT u.email FROM users u JOIN sessions x ON x.user_id = u.id WHERE x.id = $1", p.SessionID).Scan(&email); err != nil {
		s.t.Fatal(err)
	}
	return email
}
