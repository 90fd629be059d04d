package edgeprobe

import "time"

// SleepUntil blocks until t, to about a tenth of a millisecond: the Go
// runtime's timers sleep the long part, Pause the last millisecond (a Go
// timer alone wakes up to a millisecond late on Linux, which an open-loop
// load generator would count against the system it measures).
func SleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		switch {
		case d <= 0:
			return
		case d > 2*time.Millisecond:
			time.Sleep(d - 1500*time.Microsecond)
		default:
			Pause(d)
		}
	}
}
