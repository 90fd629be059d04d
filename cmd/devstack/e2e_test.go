package main

import (
	"net/http"
	"testing"
)

// TestRevocationsReachEveryGateway drives the real sessiond API and checks
// enforcement at several real gateways for every way of revoking.
func TestRevocationsReachEveryGateway(t *testing.T) {
	s := newSystem(t, 3)
	cases := []struct {
		name   string
		revoke func(userID string, p pair) int
	}{
		{"logout", func(_ string, p pair) int { return s.do("POST", "/v1/auth/logout", p.AccessToken, nil, nil) }},
		{"admin revokes the session", func(_ string, p pair) int {
			return s.do("DELETE", "/v1/sessions/"+p.SessionID, s.admin, nil, nil)
		}},
		{"admin revokes all of the user", func(id string, _ pair) int {
			return s.do("DELETE", "/v1/users/"+id+"/sessions", s.admin, nil, nil)
		}},
		{"admin disables the user", func(id string, _ pair) int {
			return s.do("PATCH", "/v1/users/"+id, s.admin, map[string]bool{"disabled": true}, nil)
		}},
		{"user revokes the session", func(_ string, p pair) int {
			return s.do("DELETE", "/v1/me/sessions/"+p.SessionID, p.AccessToken, nil, nil)
		}},
		{"refresh token reuse", func(_ string, p pair) int {
			var next pair
			if code := s.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}, &next); code != 200 {
				return code
			}
			// reuse after the grace: backdate the rotation instead of waiting
			return s.reuseAfterGrace(p.RefreshToken)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, p := s.user()
			_, bystander := s.user()
			if !s.acceptedEverywhere(p.AccessToken) {
				t.Fatal("fresh token refused at a gateway")
			}
			if code := tc.revoke(id, p); code/100 != 2 && code != http.StatusUnauthorized {
				t.Fatalf("revoke: %d", code)
			}
			s.waitRefusedEverywhere(p.AccessToken)
			if !s.acceptedEverywhere(bystander.AccessToken) {
				t.Fatal("an unrevoked token is refused")
			}
		})
	}
}

// reuseAfterGrace presents a rotated refresh token as if the grace had
// passed, by moving its rotation time back.
func (s *system) reuseAfterGrace(refresh string) int {
	s.t.Helper()
	pool := s.pool()
	if _, err := pool.Exec(s.t.Context(), "UPDATE refresh_tokens SET rotated_at = rotated_at - interval '1 hour' WHERE rotated_at IS NOT NULL"); err != nil {
		s.t.Fatal(err)
	}
	return s.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": refresh}, nil)
}

func TestProxyPassesIdentityAndRefusesRevoked(t *testing.T) {
	s := newSystem(t, 1)
	_, p := s.user()
	g := s.gateways[0]
	req, _ := http.NewRequest("GET", g.proxy+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+p.AccessToken)
	req.Header.Set("X-Auth-Role", "global_admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("proxy: %d", resp.StatusCode)
	}
	h := <-s.seen
	if h.Get("X-Auth-Session") != p.SessionID || h.Get("X-Auth-Role") != "user" {
		t.Fatalf("upstream saw %v", h)
	}
	s.do("POST", "/v1/auth/logout", p.AccessToken, nil, nil)
	s.waitRefusedEverywhere(p.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("proxy after logout: %d", resp.StatusCode)
	}
	select {
	case h := <-s.seen:
		t.Fatalf("the upstream saw a revoked request: %v", h)
	default:
	}
}

// TestGatewayRestartReplays: a gateway started after revocations refuses
// them as soon as it is ready.
func TestGatewayRestartReplays(t *testing.T) {
	s := newSystem(t, 1)
	var revoked []pair
	for i := 0; i < 5; i++ {
		_, p := s.user()
		s.do("POST", "/v1/auth/logout", p.AccessToken, nil, nil)
		revoked = append(revoked, p)
	}
	// A confirmed revocation may still be in the outbox; once the running
	// gateway refuses it, it is in the stream that a new gateway replays.
	for _, p := range revoked {
		s.waitRefusedEverywhere(p.AccessToken)
	}
	g := s.startGateway() // waits for /readyz
	for _, p := range revoked {
		if code := check(t, g, p.AccessToken); code != 401 {
			t.Fatalf("a new gateway accepted a token revoked before it started: %d", code)
		}
	}
}

// TestActivityReachesSessiond: requests through a gateway move the
// session's last_active_at forward.
func TestActivityReachesSessiond(t *testing.T) {
	s := newSystem(t, 1)
	_, p := s.user()
	var before struct {
		Sessions []struct {
			LastActiveAt string `json:"last_active_at"`
		}
	}
	s.do("GET", "/v1/me/sessions", p.AccessToken, nil, &before)
	pool := s.pool()
	if _, err := pool.Exec(t.Context(), "UPDATE sessions SET last_active_at = last_active_at - interval '1 hour' WHERE id = $1", p.SessionID); err != nil {
		t.Fatal(err)
	}
	if code := check(t, s.gateways[0], p.AccessToken); code != 200 {
		t.Fatalf("check: %d", code)
	}
	waitFor(t, func() bool {
		var recent bool
		_ = pool.QueryRow(t.Context(), "SELECT last_active_at > now() - interval '1 minute' FROM sessions WHERE id = $1", p.SessionID).Scan(&recent)
		return recent
	}, "last_active_at never moved")
}
