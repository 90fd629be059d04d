package sessions

import (
	"fmt"
	"strings"
	"time"
)

// shortUserAgent names a User-Agent the way a person would, e.g. "Chrome on
// Windows" or "curl". It is a plain substring match, not a full parser: the
// full string is shown on hover.
func shortUserAgent(ua string) string {
	if strings.TrimSpace(ua) == "" {
		return "Unknown client"
	}
	l := strings.ToLower(ua)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(l, s) {
				return true
			}
		}
		return false
	}
	var client string
	switch {
	case has("edg/", "edga/", "edgios/"):
		client = "Edge"
	case has("opr/", "opera"):
		client = "Opera"
	case has("samsungbrowser/"):
		client = "Samsung Internet"
	case has("firefox/", "fxios/"):
		client = "Firefox"
	case has("electron/"):
		client = "Desktop app"
	case has("chrome/", "crios/", "chromium/"):
		client = "Chrome"
	case has("safari/") && has("version/", "mobile/"):
		client = "Safari"
	case strings.HasPrefix(l, "curl/"):
		client = "curl"
	case has("okhttp"):
		client = "Android app"
	case has("cfnetwork"):
		client = "iOS app"
	default:
		client = ua
		if i := strings.IndexAny(client, "/ ("); i > 0 {
			client = client[:i]
		}
		client = truncate(client, 32)
	}
	var os string
	switch {
	case has("iphone", "ipod"):
		os = "iOS"
	case has("ipad"):
		os = "iPadOS"
	case has("android"):
		os = "Android"
	case has("windows"):
		os = "Windows"
	case has("cros"):
		os = "ChromeOS"
	case has("macintosh", "mac os x"):
		os = "macOS"
	case has("linux"):
		os = "Linux"
	}
	if os == "" || client == os+" app" {
		return client
	}
	return client + " on " + os
}

// relativeTime says how long ago (or, for a future t, how soon) t is, in
// the coarsest unit that fits: "just now", "5 min ago", "3 hours ago",
// "in 29 days".
func relativeTime(now, t time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	if d < 45*time.Second {
		return "just now"
	}
	var s string
	switch {
	case d < time.Hour:
		s = fmt.Sprintf("%d min", max(1, int((d+30*time.Second)/time.Minute)))
	case d < 24*time.Hour:
		s = plural(int(d/time.Hour), "hour")
	case d < 60*24*time.Hour:
		s = plural(int(d/(24*time.Hour)), "day")
	case d < 2*365*24*time.Hour:
		s = plural(int(d/(30*24*time.Hour)), "month")
	default:
		s = plural(int(d/(365*24*time.Hour)), "year")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// exactTime is t in RFC 3339, UTC, to the second.
func exactTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

var deviceLabels = map[string]string{"ios": "iOS", "android": "Android", "web": "Web", "desktop": "Desktop", "other": "Other"}

// deviceLabel is the display name of a device type.
func deviceLabel(t string) string {
	if l, ok := deviceLabels[t]; ok {
		return l
	}
	return t
}

var actionLabels = map[string]string{
	ActionLogin:               "Signed in",
	ActionLoginFailed:         "Failed sign-in",
	ActionRefreshReuse:        "Refresh token reused",
	ActionSessionRevoked:      "Session revoked",
	ActionUserSessionsRevoked: "All sessions revoked",
	ActionUserDisabled:        "User disabled",
	ActionUserEnabled:         "User enabled",
	ActionUserCreated:         "User created",
	ActionOrgCreated:          "Organisation created",
	ActionUserErased:          "User erased",
}

// actionLabel is the display name of an audit action.
func actionLabel(a string) string {
	if l, ok := actionLabels[a]; ok {
		return l
	}
	return a
}

var reasonLabels = map[string]string{
	"logout":          "signed out",
	"self_revoke":     "ended by the user",
	"admin_revoke":    "revoked by an administrator",
	"user_revoke_all": "user signed out other devices",
	"refresh_reuse":   "refresh token reuse detected",
	"user_disabled":   "user disabled",
	"erasure":         "GDPR erasure",
	"bad_password":    "wrong password",
	"unknown_account": "unknown account",
	"user_erased":     "user erased",
}

// reasonLabel explains an audit reason in words.
func reasonLabel(r string) string {
	if l, ok := reasonLabels[r]; ok {
		return l
	}
	return strings.ReplaceAll(r, "_", " ")
}
