package main

import (
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkRevokeToRefusal measures, with 8 gateways subscribed, the time
// from the start of an admin's revoke call to the first 401 for that token
// at each gateway, polled every 100 µs from the call's return. Each token is in use (cached at every gateway) before it
// is revoked. b.N is the number of revocations, one at a time:
//
//	REVOKE_TEST_PG_FSYNC=on go test -run '^$' -bench RevokeToRefusal -benchtime 200x ./cmd/devstack/
func BenchmarkRevokeToRefusal(b *testing.B) {
	const gateways = 8
	s := newSystem(b, gateways)
	_, first := s.user()
	email := s.emailOf(first)
	tokens := make([]pair, b.N)
	for i := range tokens {
		tokens[i] = s.login(email, "password-1")
		for _, g := range s.gateways {
			if check(b, g, tokens[i].AccessToken) != 200 {
				b.Fatal("fresh token refused")
			}
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	poll := func(g *gw, token string) int {
		req, _ := http.NewRequest("GET", g.control+"/v1/check", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var lat, api []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok := tokens[i]
		start := time.Now()
		if code := s.do("DELETE", "/v1/sessions/"+tok.SessionID, s.admin, nil, nil); code != 204 {
			b.Fatalf("revoke: %d", code)
		}
		api = append(api, float64(time.Since(start).Microseconds())/1000)
		// A token cannot be refused before its revocation commits, so the
		// gateways are polled from the call's return: pollers running during
		// the call would only take the two cores from the path measured.
		var wg sync.WaitGroup
		got := make([]time.Duration, gateways)
		for j, g := range s.gateways {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := start.Add(5 * time.Second)
				for time.Now().Before(deadline) {
					if poll(g, tok.AccessToken) == 401 {
						got[j] = time.Since(start)
						return
					}
					time.Sleep(100 * time.Microsecond)
				}
				b.Errorf("gateway %d never refused the token", j)
			}()
		}
		wg.Wait()
		for _, d := range got {
			lat = append(lat, float64(d.Microseconds())/1000)
		}
	}
	b.StopTimer()
	sort.Float64s(lat)
	sort.Float64s(api)
	b.ReportMetric(api[len(api)/2], "api-p50-ms")
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
