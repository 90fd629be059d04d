package edgeprobe

import (
	"syscall"
	"time"
)

// Pause blocks the calling thread for about d with the kernel's
// high-resolution timer: time.Sleep wakes through the network poller, whose
// wait has a millisecond resolution on Linux.
func Pause(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	_ = syscall.Nanosleep(&ts, nil)
}
