package portal

import (
	"fmt"
	"strings"
	"time"

	"github.com/sessionguard/revoke/services/sessions"
)

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

var actionLabels = map[string]string{
	sessions.ActionLogin:               "Signed in",
	sessions.ActionLoginFailed:         "Failed sign-in",
	sessions.ActionRefreshReuse:        "Refresh token reused",
	sessions.ActionSessionRevoked:      "Session revoked",
	sessions.ActionUserSessionsRevoked: "All sessions revoked",
	sessions.ActionUserDisabled:        "User disabled",
	sessions.ActionUserEnabled:         "User enabled",
	sessions.ActionUserCreated:         "User created",
	sessions.ActionOrgCreated:          "Organisation created",
	sessions.ActionUserErased:          "User erased",
	sessions.ActionBulkRevoke:          "Revoked by rule",
	sessions.ActionLockoutCleared:      "Sign-in lockout cleared",
	sessions.ActionPolicyChanged:       "Session policy changed",
	sessions.ActionClientCreated:       "API client created",
	sessions.ActionClientDeleted:       "API client deleted",
}

// actionLabel is the display name of an audit action.
func actionLabel(a string) string {
	if l, ok := actionLabels[a]; ok {
		return l
	}
	return a
}

var reasonLabels = map[string]string{
	"logout":            "signed out",
	"self_revoke":       "ended by the user",
	"admin_revoke":      "revoked by an administrator",
	"user_revoke_all":   "user signed out other devices",
	"refresh_reuse":     "refresh token reuse detected",
	"user_disabled":     "user disabled",
	"erasure":           "GDPR erasure",
	"admin_bulk_revoke": "revoked by rule",
	"bad_password":      "wrong password",
	"unknown_account":   "unknown account",
	"user_erased":       "user erased",
}

// reasonLabel explains an audit reason in words.
func reasonLabel(r string) string {
	if l, ok := reasonLabels[r]; ok {
		return l
	}
	return strings.ReplaceAll(r, "_", " ")
}
