package gateway

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestAClockStepChangesNothing: the wall clock stepped by less than the
// token leeway, forward or back, while the gateway runs (NTP, the soak's
// nemesis) neither ages a current gateway into failing closed nor makes a
// stale one look current, and it still lets a fresh token in and keeps a
// revoked one out. Staleness is measured on the monotonic clock.
func TestAClockStepChangesNothing(t *testing.T) {
	w := newWorld(t, time.Second)
	w.start()
	clock := NewClock(0)
	w.gw.now, w.feed.now = clock.Now, clock.Now
	w.waitReady()
	live, revoked := newGrant(), newGrant()
	liveTok, revokedTok := w.is.sign(t, live), w.is.sign(t, revoked)
	w.publish(revokeSession(revoked))
	w.waitDenied(revokedTok)

	for _, step := range []time.Duration{3 * time.Second, -3 * time.Second} {
		before := w.feed.Staleness()
		clock.Set(step)
		after := w.feed.Staleness()
		if after > before+time.Second || after < 0 {
			t.Fatalf("a clock step of %s moved the staleness from %s to %s", step, before, after)
		}
		if !w.feed.Current() {
			t.Fatalf("a clock step of %s made a current gateway fail closed", step)
		}
		if d := w.gw.Decide(t.Context(), "Bearer "+liveTok, clock.Now()); d.Outcome != Allow {
			t.Fatalf("after a clock step of %s a fresh token is refused: %+v", step, d)
		}
		if d := w.gw.Decide(t.Context(), "Bearer "+revokedTok, clock.Now()); d.Outcome != Deny {
			t.Fatalf("after a clock step of %s a revoked token is let in: %+v", step, d)
		}
	}
}

// TestClockOverHTTP: GET tells the offset, PUT steps it, and an offset that
// is not a duration is refused and changes nothing.
func TestClockOverHTTP(t *testing.T) {
	c := NewClock(time.Second)
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	put := func(q string) int {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/debug/clock?offset="+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("-2.5s"); code != 200 || c.Offset() != -2500*time.Millisecond {
		t.Fatalf("PUT -2.5s: %d, offset %s", code, c.Offset())
	}
	if code := put("soon"); code != 400 || c.Offset() != -2500*time.Millisecond {
		t.Fatalf("PUT soon: %d, offset %s", code, c.Offset())
	}
	if got := time.Until(c.Now()); got > -2*time.Second || got < -3*time.Second {
		t.Fatalf("the clock runs %s from the machine's, want -2.5s", got)
	}
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, PUT" {
		t.Fatalf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestClockOffsetConfig: DEBUG_CLOCK_OFFSET gives the gateway a clock of its
// own, only beside DEBUG_ADDR (where it is stepped), and must be a duration.
func TestClockOffsetConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"JWKS_URL": "http://x/jwks", "NATS_URL": "nats://x", "GATEWAY_UPSTREAM": "http://x"}
	with := func(kv ...string) func(string) string {
		env := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return func(k string) string { return env[k] }
	}
	if c, err := ConfigFromEnv(with()); err != nil || c.Clock != nil || c.Now != nil {
		t.Fatalf("unset: clock %v, err %v", c.Clock, err)
	}
	c, err := ConfigFromEnv(with("DEBUG_CLOCK_OFFSET", "-2s", "DEBUG_ADDR", "127.0.0.1:0"))
	if err != nil || c.Clock == nil || c.Clock.Offset() != -2*time.Second || c.Now == nil {
		t.Fatalf("-2s: clock %v, err %v", c.Clock, err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"DEBUG_CLOCK_OFFSET", "2"}, "DEBUG_CLOCK_OFFSET: \"2\" is not a duration"},
		{[]string{"DEBUG_CLOCK_OFFSET", "0s"}, "DEBUG_CLOCK_OFFSET needs DEBUG_ADDR"},
	} {
		if _, err := ConfigFromEnv(with(tc.env...)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.env, err, tc.want)
		}
	}
}
