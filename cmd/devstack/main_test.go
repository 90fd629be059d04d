package main

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionguard/revoke/internal/testenv"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDevStackStartsEverything runs the README's run command in-process:
// a private PostgreSQL (DATABASE_URL unset), an embedded NATS, sessiond,
// gatewayd and the demo upstream, then stops it cleanly.
func TestDevStackStartsEverything(t *testing.T) {
	if os.Getenv("DATABASE_URL") != "" {
		t.Skip("DATABASE_URL is set: the dev stack would use it instead of its private PostgreSQL")
	}
	dir, err := os.MkdirTemp("", "ds-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := map[string]string{
		"DEVSTACK_DIR": dir, "SESSIOND_ADDR": "127.0.0.1:0", "GATEWAY_ADDR": "127.0.0.1:0",
		"GATEWAY_CONTROL_ADDR": "127.0.0.1:0", "DEMO_UPSTREAM_ADDR": "127.0.0.1:0",
	}
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"devstack"}, func(k string) string { return env[k] }, &stdout, &stderr)
	}()
	var early error
	testenv.Eventually(t, 60*time.Second, func() bool {
		select {
		case early = <-done:
			t.Fatalf("dev stack stopped early: %v\n%s\n%s", early, stdout.String(), stderr.String())
		default:
		}
		return strings.Contains(stdout.String(), "press Ctrl-C to stop")
	}, "dev stack never got ready")
	out := stdout.String()
	for _, want := range []string{"sessiond", "gatewayd proxy", "demo upstream", "generated the bootstrap admin's password", "curl"} {
		if !strings.Contains(out, want) {
			t.Fatalf("walkthrough lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(dir + "/admin-password"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev stack did not stop")
	}
	if _, err := os.Stat(dir + "/pg/postmaster.pid"); !os.IsNotExist(err) {
		t.Fatal("the private PostgreSQL is still running after the dev stack stopped")
	}
}
