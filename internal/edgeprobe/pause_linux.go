package edgeprobe

import (
	"syscall"
	"time"
)

// pause blocks the calling thread for about d with the kernel's
// high-resolution timer: time.Sleep wakes through the network poller, whose
// wait has a millisecond resolution on Linux.
func pause(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	_ = syscall.Nanosleep(&ts, nil)
}
