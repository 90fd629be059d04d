package sessions_test

import (
	"testing"

	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

func TestMain(m *testing.M) { sessionstest.Main(m) }
