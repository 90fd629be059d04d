package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// slowDisk throttles a process's disk: a cgroup (v1 blkio) whose reads and
// writes of the disk under the soak's directory are held to a few hundred
// KB and 16 operations a second. The kernel throttles what the process
// waits for (fsync, O_DSYNC and direct writes, reads the page cache misses),
// not the page cache's later writeback: a NATS node feels it when it syncs
// its store, which the soak's nodes do every second (nats -sync 1s).
type slowDisk struct {
	dir    string // the throttled cgroup; "" when unavailable
	root   string // the hierarchy's root cgroup, where processes go back
	reason string // why it is unavailable
}

const blkioRoot = "/sys/fs/cgroup/blkio"

// Throttle limits while a process is in the cgroup.
const (
	slowBPS  = 256 << 10
	slowIOPS = 16
)

// newSlowDisk prepares the throttle for the disk that holds dataDir, or
// says why it cannot (not root, no cgroup v1 blkio hierarchy, a store on
// no block device).
func newSlowDisk(dataDir, name string) *slowDisk {
	dev, err := wholeDisk(dataDir)
	if err != nil {
		return &slowDisk{reason: err.Error()}
	}
	dir := filepath.Join(blkioRoot, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return &slowDisk{reason: fmt.Sprintf("no cgroup v1 blkio hierarchy to throttle in (%v)", err)}
	}
	for _, f := range []struct {
		file  string
		limit int
	}{
		{"blkio.throttle.write_bps_device", slowBPS}, {"blkio.throttle.read_bps_device", slowBPS},
		{"blkio.throttle.write_iops_device", slowIOPS}, {"blkio.throttle.read_iops_device", slowIOPS},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.file), []byte(dev+" "+strconv.Itoa(f.limit)), 0); err != nil {
			_ = os.Remove(dir)
			return &slowDisk{reason: fmt.Sprintf("cannot throttle %s: %v", dev, err)}
		}
	}
	return &slowDisk{dir: dir, root: blkioRoot}
}

// wholeDisk is the major:minor of the disk (not partition: blkio throttles
// whole disks) that holds path.
func wholeDisk(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", err
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	sys := filepath.Join("/sys/dev/block", dev)
	if _, err := os.Stat(sys); err != nil {
		return "", fmt.Errorf("%s is on no block device (%s): %v", path, dev, err)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		b, err := os.ReadFile(filepath.Join(sys, "..", "dev"))
		if err != nil {
			return "", fmt.Errorf("the disk of partition %s: %v", dev, err)
		}
		dev = strings.TrimSpace(string(b))
	}
	return dev, nil
}

// slow moves pid (every thread) into the throttle; fast moves it back.
func (d *slowDisk) slow(pid int) error { return d.move(d.dir, pid) }
func (d *slowDisk) fast(pid int) error { return d.move(d.root, pid) }

func (d *slowDisk) move(cgroup string, pid int) error {
	if d.dir == "" {
		return errors.New("slow disk unavailable: " + d.reason)
	}
	if pid <= 0 {
		return errors.New("no process to throttle")
	}
	if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move %d to %s: %w", pid, cgroup, err)
	}
	return nil
}

// served is how many I/O operations and bytes the throttle has passed, in
// all (the kernel's blkio.throttle.io_serviced and io_service_bytes).
func (d *slowDisk) served() (ops, bytes int64) {
	total := func(file string) int64 {
		b, _ := os.ReadFile(filepath.Join(d.dir, file))
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Total" {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
		return 0
	}
	return total("blkio.throttle.io_serviced"), total("blkio.throttle.io_service_bytes")
}

// close lets go of every process left in the throttle and removes it.
func (d *slowDisk) close() {
	if d.dir == "" {
		return
	}
	if b, err := os.ReadFile(filepath.Join(d.dir, "cgroup.procs")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = d.fast(pid)
			}
		}
	}
	_ = os.Remove(d.dir)
}
