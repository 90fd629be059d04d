package sessions

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessionguard/revoke/internal/tokens"
)

// TestVerifiedTokensExpireAndStayBounded: a remembered token is valid only
// within its exp (and iat/nbf) with the leeway, and the cache holds at most
// two generations, keeping what is used.
func TestVerifiedTokensExpireAndStayBounded(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	leeway := 5 * time.Second
	v := newVerifiedTokens(4)
	v.put("a", tokens.Claims{Subject: "a", IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{now, true},
		{now.Add(time.Minute + leeway - time.Nanosecond), true},
		{now.Add(time.Minute + leeway), false},      // expired
		{now.Add(-leeway - time.Nanosecond), false}, // issued in the future
	} {
		if c, ok := v.get("a", tc.at, leeway); ok != tc.want || (ok && c.Subject != "a") {
			t.Errorf("at %s: %v %+v, want %v", tc.at.Sub(now), ok, c, tc.want)
		}
	}
	if _, ok := v.get("b", now, leeway); ok {
		t.Error("a token never verified is not remembered")
	}
	claims := tokens.Claims{IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	for i := range 20 {
		v.put(fmt.Sprint(i), claims)
		if _, ok := v.get("a", now, leeway); !ok { // "a" stays in use
			t.Fatalf("after %d more tokens the one in use was dropped", i+1)
		}
	}
	if n := len(v.cur) + len(v.prev); n > 8 {
		t.Errorf("%d tokens held, at most 8", n)
	}
	if _, ok := v.get("0", now, leeway); ok {
		t.Error("the oldest unused token should have been dropped")
	}
}
