package edgeprobe

import (
	"testing"
	"time"
)

// TestSleepUntilNeverWakesEarly: an open-loop schedule must not send
// before its instant, whether that is far, near or past.
func TestSleepUntilNeverWakesEarly(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 0, 50 * time.Microsecond, 900 * time.Microsecond, 3 * time.Millisecond, 20 * time.Millisecond} {
		at := time.Now().Add(d)
		SleepUntil(at)
		if now := time.Now(); now.Before(at) {
			t.Errorf("SleepUntil(now%+v) returned %s early", d, at.Sub(now))
		}
	}
}
