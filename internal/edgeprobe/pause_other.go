//go:build !linux

package edgeprobe

import "time"

// pause sleeps for about d (at the resolution of the Go runtime's timers).
func pause(d time.Duration) { time.Sleep(d) }
