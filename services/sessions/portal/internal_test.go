package portal

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestPortalCSRFKeyFromKEK(t *testing.T) {
	kek := []byte("0123456789abcdef0123456789abcdef")
	a := New(nil, nil, Config{KEK: kek}, nil)
	b := New(nil, nil, Config{KEK: kek}, nil)
	c := New(nil, nil, Config{KEK: []byte("another key-encryption key......")}, nil)
	sid := "0b1c6f3e-3a56-4b7e-9a8c-2a4d0f1e5b6c"
	if a.sessionCSRF(sid) != b.sessionCSRF(sid) {
		t.Fatal("replicas with the same KEY_ENCRYPTION_KEY disagree on a session's CSRF token")
	}
	if a.sessionCSRF(sid) == c.sessionCSRF(sid) {
		t.Fatal("the CSRF token does not depend on the key")
	}
	if a.sessionCSRF(sid) == a.sessionCSRF("1b1c6f3e-3a56-4b7e-9a8c-2a4d0f1e5b6c") || a.sessionCSRF(sid) == a.signinCSRF(sid) {
		t.Fatal("CSRF tokens collide across sessions or purposes")
	}
	if d := New(nil, nil, Config{}, nil); d.sessionCSRF(sid) == New(nil, nil, Config{}, nil).sessionCSRF(sid) || !d.secure {
		t.Fatal("without a KEK the key must be random, and by default the cookies Secure")
	}
}

func TestRelativeTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		10 * time.Second:             "just now",
		-10 * time.Second:            "just now",
		50 * time.Second:             "1 min ago",
		5 * time.Minute:              "5 min ago",
		59 * time.Minute:             "59 min ago",
		time.Hour:                    "1 hour ago",
		5*time.Hour + 59*time.Minute: "5 hours ago",
		24 * time.Hour:               "1 day ago",
		9 * 24 * time.Hour:           "9 days ago",
		-29 * 24 * time.Hour:         "in 29 days",
		90 * 24 * time.Hour:          "3 months ago",
		800 * 24 * time.Hour:         "2 years ago",
	} {
		if got := relativeTime(now, now.Add(-d)); got != want {
			t.Errorf("%s ago: %q, want %q", d, got, want)
		}
	}
	if got := exactTime(time.Date(2026, 11, 27, 13, 4, 5, 999, time.FixedZone("CET", 3600))); got != "2026-11-27T12:04:05Z" {
		t.Errorf("exact time %q", got)
	}
}

func TestBackTo(t *testing.T) {
	for back, want := range map[string]string{
		"/admin/?email=a&device=web":  "/admin/?email=a&device=web",
		"/admin/users/x":              "/admin/users/x",
		"":                            "/def",
		"https://evil.example/admin/": "/def",
		"//evil.example/admin/":       "/def",
		"/admin\\@evil.example":       "/def",
		"/account/sessions":           "/def",
		"/admin/\r\nSet-Cookie: x":    "/def",
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(url.Values{"back": {back}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		_ = r.ParseForm()
		if got := backTo(r, "/admin/", "/def"); got != want {
			t.Errorf("back %q: %q, want %q", back, got, want)
		}
	}
}
