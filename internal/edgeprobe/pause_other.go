//go:build !linux

package edgeprobe

import "time"

// Pause sleeps for about d (at the resolution of the Go runtime's timers).
func Pause(d time.Duration) { time.Sleep(d) }
