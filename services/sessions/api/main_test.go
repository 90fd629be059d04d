package api_test

import (
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

func TestMain(m *testing.M) { sessionstest.Main(m) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// sessionPage is the JSON of GET /v1/sessions.
type sessionPage struct {
	Sessions   []sessions.Session `json:"sessions"`
	NextCursor *string            `json:"next_cursor"`
}

// newRefreshToken is a well-formed refresh token that the service never
// issued.
func newRefreshToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
