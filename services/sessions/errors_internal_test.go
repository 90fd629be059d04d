package sessions

import (
	"strings"
	"testing"
	"time"
)

// TestALockoutSaysHowLongItLasts: a sign-in refused for failed attempts
// says when to try again, on the page and in the problem.
func TestALockoutSaysHowLongItLasts(t *testing.T) {
	t.Parallel()
	for wait, want := range map[time.Duration]string{
		14*time.Minute + 2*time.Second: "15 minutes",
		time.Minute:                    "1 minute",
		40 * time.Second:               "40 seconds",
		200 * time.Millisecond:         "1 second",
	} {
		f := Explain(&rateLimitedError{RetryAfter: wait})
		if f.Status != 429 || f.RetryAfter != wait || !strings.Contains(f.Message, "Try again in "+want) || !strings.Contains(f.Detail, "try again in "+want) {
			t.Errorf("%v: %+v, want %q", wait, f, want)
		}
	}
}
