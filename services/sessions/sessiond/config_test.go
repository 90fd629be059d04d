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

// TestPolicySweepInterval: the sweep runs every 30 s unless told, and never
// less often than the contract's minute.
func TestPolicySweepInterval(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x", "NATS_URL": "nats://x", "KEY_ENCRYPTION_KEY": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}
	c, err := sessiond.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || c.PolicySweep != 30*time.Second {
		t.Fatalf("default: %v %v", c.PolicySweep, err)
	}
	env["POLICY_SWEEP_INTERVAL"] = "2m"
	if _, err := sessiond.ConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "POLICY_SWEEP_INTERVAL") {
		t.Fatalf("2m: %v", err)
	}
}
