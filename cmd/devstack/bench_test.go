package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"testing"
	"time"
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
// time is when its 401 is read. The observer is one goroutine with one
// keep-alive connection per gateway (see observer): 8 clients on 8 machines
// cost the gateways' machines nothing, while on this one an observer with
// a goroutine and a net/http client per gateway spent more of the two
// cores than the path it measures (its first poll, already a 401 at nearly
// every gateway, took 2 ms to come back).
func BenchmarkRevokeToRefusal(b *testing.B) {
	const gateways = 8
	s := newSystem(b, gateways)
	_, first := s.user()
	email := s.emailOf(first)
	tokens := make([]pair, b.N)
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
	obs := newObserver(b, s.gateways)
	var lat, api []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok := tokens[i]
		start := time.Now()
		if code := s.do("DELETE", "/v1/sessions/"+tok.SessionID, s.admin, nil, nil); code != 204 {
			b.Fatalf("revoke: %d", code)
		}
		api = append(api, float64(time.Since(start).Microseconds())/1000)
		for _, d := range obs.untilRefused(start, tok.AccessToken, 5*time.Second) {
			lat = append(lat, float64(d.Microseconds())/1000)
		}
	}
	b.StopTimer()
	sort.Float64s(lat)
	sort.Float64s(api)
	b.ReportMetric(api[len(api)/2], "api-p50-ms")
	b.ReportMetric(api[len(api)*99/100], "api-p99-ms")
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(0, "ns/op")
}

// observer asks gateways' /v1/check about a token over one keep-alive
// HTTP/1.1 connection per gateway, from one goroutine.
type observer struct {
	tb    testing.TB
	hosts []string
	conns []net.Conn
	rds   []*bufio.Reader
}

func newObserver(tb testing.TB, gws []*gw) *observer {
	o := &observer{tb: tb}
	for _, g := range gws {
		u, err := url.Parse(g.control)
		if err != nil {
			tb.Fatal(err)
		}
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		o.hosts, o.conns, o.rds = append(o.hosts, u.Host), append(o.conns, c), append(o.rds, bufio.NewReader(c))
	}
	return o
}

// untilRefused polls every gateway until each has answered 401 for token,
// and returns, per gateway, the time from start to reading that 401.
func (o *observer) untilRefused(start time.Time, token string, limit time.Duration) []time.Duration {
	got := make([]time.Duration, len(o.conns))
	pending := make([]int, len(o.conns))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		if time.Since(start) > limit {
			o.tb.Fatalf("%d gateways still accept the revoked token after %s", len(pending), limit)
		}
		for _, i := range pending {
			req := "GET /v1/check HTTP/1.1\r\nHost: " + o.hosts[i] + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
			if _, err := io.WriteString(o.conns[i], req); err != nil {
				o.tb.Fatal(err)
			}
		}
		still := pending[:0]
		for _, i := range pending {
			resp, err := http.ReadResponse(o.rds[i], nil)
			if err != nil {
				o.tb.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				got[i] = time.Since(start)
			case http.StatusOK:
				still = append(still, i)
			default:
				o.tb.Fatalf("gateway %s answered %d", o.hosts[i], resp.StatusCode)
			}
		}
		if pending = still; len(pending) > 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	return got
}

func (s *system) emailOf(p pair) string {
	s.t.Helper()
	var email string
	if err := s.pool().QueryRow(s.t.Context(), "SELECT u.email FROM users u JOIN sessions x ON x.user_id = u.id WHERE x.id = $1", p.SessionID).Scan(&email); err != nil {
		s.t.Fatal(err)
	}
	return email
}
