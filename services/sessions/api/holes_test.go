package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

// TestUserAgentIsStoredCleaned: a User-Agent with bytes that are not UTF-8
// or with control characters signs in (200) and is stored cleaned.
func TestUserAgentIsStoredCleaned(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	_, email := e.User(e.Org("A"), "user")
	b, _ := json.Marshal(map[string]string{"email": email, "password": "password-1"})
	req, _ := http.NewRequest("POST", e.Srv.URL+"/v1/auth/login", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (iPhone; \xff\xfe CPU iPhone OS 17_0)\t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p sessions.TokenPair
	_ = json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login with an odd User-Agent: %d", resp.StatusCode)
	}
	var ua, device string
	if err := e.Pool.QueryRow(t.Context(), "SELECT user_agent, device_type FROM sessions WHERE id = $1", p.SessionID).Scan(&ua, &device); err != nil {
		t.Fatal(err)
	}
	if ua != "Mozilla/5.0 (iPhone; \uFFFD CPU iPhone OS 17_0)" || device != "ios" {
		t.Fatalf("stored %q (%s)", ua, device)
	}
}
