// Package proc runs the processes of the load tool and the soak: each
// with its own environment, log file and process group, stopped gently or
// killed, paused and resumed, and started again as it was.
package proc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Spec is what to run.
type Spec struct {
	Name string   // for logs and errors
	Bin  string   // the executable
	Args []string // without the program name
	Env  []string // added to the tool's own environment (later entries win)
	Log  string   // file that takes stdout and stderr (appended to)
}

// Proc is a running (or stopped) process of a Spec.
type Proc struct {
	spec Spec
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs spec.
func Start(spec Spec) (*Proc, error) {
	p := &Proc{spec: spec}
	return p, p.Restart()
}

// Restart starts the process again as it was first started; a process
// still running is left as it is.
func (p *Proc) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return nil
	}
	logf, err := os.OpenFile(p.spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.spec.Bin, p.spec.Args...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// running reports whether the process has not exited; p.mu is held.
func (p *Proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Name is the spec's name; Log its log file.
func (p *Proc) Name() string { return p.spec.Name }
func (p *Proc) Log() string  { return p.spec.Log }

// Pid is the process id of the current run (0 before the first).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Done is closed when the current run exits.
func (p *Proc) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Running reports whether the current run has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Signal sends sig to the current run.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return fmt.Errorf("%s is not running", p.spec.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Stop ends the current run gently: SIGCONT (a paused process cannot
// stop), SIGTERM, and SIGKILL after 10 s. A nil or stopped Proc is fine.
func (p *Proc) Stop() {
	if p == nil {
		return
	}
	done := p.Done()
	if done == nil {
		return
	}
	_ = p.Signal(syscall.SIGCONT)
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.Signal(syscall.SIGKILL)
		<-done
	}
}

// Kill ends the current run at once (SIGKILL) and waits for it.
func (p *Proc) Kill() {
	done := p.Done()
	if done == nil {
		return
	}
	_ = p.Signal(syscall.SIGKILL)
	<-done
}

// WaitHTTP waits until url answers 200, the process exits, or wait passes.
func (p *Proc) WaitHTTP(ctx context.Context, client *http.Client, url string, wait time.Duration) error {
	return p.WaitFor(ctx, wait, func() bool {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// WaitFor polls ready every 20 ms until it holds, the process exits, or
// wait passes.
func (p *Proc) WaitFor(ctx context.Context, wait time.Duration, ready func() bool) error {
	done := p.Done()
	deadline := time.Now().Add(wait)
	for {
		if ready() {
			return nil
		}
		select {
		case <-done:
			p.mu.Lock()
			err := p.err
			p.mu.Unlock()
			return fmt.Errorf("%s exited before it was ready: %v (log %s)", p.spec.Name, err, p.spec.Log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (log %s)", p.spec.Name, wait, p.spec.Log)
		}
	}
}

// Build compiles packages (e.g. "./cmd/sessiond", from the repository
// root) into dir, with the compiler's output to w.
func Build(ctx context.Context, dir string, w io.Writer, packages ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", filepath.Clean(dir) + "/"}, packages...)...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %v (run from the repository root): %w", packages, err)
	}
	return nil
}

// FreeAddrs returns n loopback addresses (host:port) whose ports were free
// a moment ago, all different.
func FreeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// FreeAddr is one such address.
func FreeAddr() (string, error) {
	a, err := FreeAddrs(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}
