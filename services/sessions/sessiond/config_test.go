package sessiond_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessiond"
)

// TestSettingsThatBreakTheGuaranteesAreRefused: a token leeway beyond the
// revocation leeway would let a revoked token outlive its blocklist entry.
func TestSettingsThatBreakTheGuaranteesAreRefused(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TOKEN_LEEWAY": "2m"}
	_, err := sessiond.ServiceConfigFromEnv(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "TOKEN_LEEWAY (2m0s) must not exceed the revocation leeway (1m0s)") {
		t.Fatalf("error %v", err)
	}
	env["TOKEN_LEEWAY"] = "1m"
	if _, err := sessiond.ServiceConfigFromEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatalf("TOKEN_LEEWAY=1m: %v", err)
	}
}

func TestLoginRateLimitSettings(t *testing.T) {
	t.Parallel()
	c, err := sessiond.ServiceConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginLimit != (sessions.RateLimit{N: 10, Window: 15 * time.Minute}) || c.LoginIPLimit != (sessions.RateLimit{N: 100, Window: 15 * time.Minute}) {
		t.Fatalf("defaults %v and %v, want 10/15m and 100/15m", c.LoginLimit, c.LoginIPLimit)
	}
	env := map[string]string{"LOGIN_RATE_LIMIT": "5/1h", "LOGIN_IP_RATE_LIMIT": "oops"}
	_, err = sessiond.ServiceConfigFromEnv(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), `LOGIN_IP_RATE_LIMIT: "oops" must be N/duration`) {
		t.Fatalf("error %v", err)
	}
}
