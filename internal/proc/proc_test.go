package proc

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// state is the process's state letter in /proc (R, S, T for stopped...).
func state(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0]
}

func waitState(t *testing.T, pid int, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if state(t, pid) == want {
			return
		}
	}
	t.Fatalf("process %d in state %q, want %q", pid, state(t, pid), want)
}

// TestAProcessKilledPausedAndStartedAgain: a process runs, pauses on
// SIGSTOP and resumes on SIGCONT, dies on Kill, starts again as it was
// (its log appended), and stops gently even while paused.
func TestAProcessKilledPausedAndStartedAgain(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	p, err := Start(Spec{Name: "sleeper", Bin: "/bin/sh", Args: []string{"-c", "echo started $GREETING; exec sleep 60"}, Env: []string{"GREETING=hello"}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	first := p.Pid()
	if !p.Running() || first == 0 {
		t.Fatal("not running after Start")
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(t, first, "T")
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitState(t, first, "S")

	p.Kill()
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
	if p.Running() {
		t.Fatal("running after Kill")
	}
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Fatal("a signal to a dead process succeeded")
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if p.Pid() == first || !p.Running() {
		t.Fatalf("restart: pid %d (was %d), running %v", p.Pid(), first, p.Running())
	}
	if err := p.Restart(); err != nil || !p.Running() {
		t.Fatalf("restarting a running process: %v", err)
	}
	logged := func() int { b, _ := os.ReadFile(log); return strings.Count(string(b), "started hello") }
	for deadline := time.Now().Add(5 * time.Second); logged() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	// Paused, it still stops gently.
	_ = p.Signal(syscall.SIGSTOP)
	waitState(t, p.Pid(), "T")
	p.Stop()
	if p.Running() {
		t.Fatal("running after Stop")
	}
	if err := p.WaitFor(context.Background(), time.Second, func() bool { return false }); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("waiting on a stopped process: %v", err)
	}
	if n := logged(); n != 2 {
		t.Fatalf("%d runs in the log, want both, with their environment", n)
	}
}

// TestWaitForAProcessThatExits: waiting for readiness ends with an error
// naming the log when the process exits.
func TestWaitForAProcessThatExits(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	p, err := Start(Spec{Name: "quitter", Bin: "/bin/sh", Args: []string{"-c", "exit 3"}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	// An hour: a wait that did not end at the exit would time the test out.
	err = p.WaitFor(context.Background(), time.Hour, func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), log) {
		t.Fatalf("err %v", err)
	}
}
