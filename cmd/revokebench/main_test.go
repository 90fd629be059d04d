package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for revokebench in its other
// modes: the tool starts NATS and the bare servers as processes of its own
// binary (os.Executable), which is this one under go test.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "bare", "nats", "fleet":
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := run(ctx, append([]string{"revokebench"}, os.Args[1:]...), os.Getenv, os.Stdout, os.Stderr); err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestOpenLoopSendsEveryOneOnTime: each of n sends leaves at or after its
// scheduled instant, the instants a period apart, none dropped, although
// every send takes far longer than the period (a closed loop would fall
// behind).
func TestOpenLoopSendsEveryOneOnTime(t *testing.T) {
	const rate, n = 1000, 200
	var mu sync.Mutex
	sent := map[int]time.Time{}
	targets := make([]time.Time, n)
	openLoop(rate, n, func(i int, target time.Time) {
		now := time.Now()
		mu.Lock()
		sent[i] = now
		targets[i] = target
		mu.Unlock()
		if now.Before(target) {
			t.Errorf("send %d left %s before its instant", i, target.Sub(now))
		}
		time.Sleep(20 * time.Millisecond) // 20 periods
	})
	if len(sent) != n {
		t.Fatalf("%d of %d sent", len(sent), n)
	}
	for i := 1; i < n; i++ {
		if d := targets[i].Sub(targets[i-1]); d != time.Second/rate {
			t.Fatalf("instants %d and %d are %s apart, want %s", i-1, i, d, time.Second/rate)
		}
	}
}

// TestPropagationMeasuresEveryRevocation runs the load tool end to end,
// briefly: PostgreSQL, NATS, sessiond, two gateways and the bare floor as
// processes; every scheduled revocation must be sent, answered enforced,
// timed by the gateways' own reports and refused by both gateways.
func TestPropagationMeasuresEveryRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "../sessiond", "../gatewayd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "result.json")
	args := []string{"revokebench", "-scenario", "propagation", "-rates", "40", "-rounds", "1", "-duration", "1s",
		"-gateways", "2", "-bin", bin, "-out", out, "-svg", filepath.Join(dir, "latency.svg")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, args, os.Getenv, io.Discard, testWriter{t}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Propagation.Runs) != 2 || len(res.Propagation.Summary) != 1 {
		t.Fatalf("runs %+v", res.Propagation)
	}
	for _, r := range res.Propagation.Runs {
		if r.Scheduled != 40 || r.Sent != 40 || r.Failed+r.NotEnforced+r.StillAccepts != 0 || r.Truth.N != 40 || r.Answer.N != 40 {
			t.Errorf("%s: %+v", r.Path, r)
		}
		if r.Truth.P50 <= 0 || r.Answer.P50 <= 0 {
			t.Errorf("%s: latencies not measured: %+v", r.Path, r)
		}
		if r.Path == "sessiond" && (r.Slack.N != 40 || r.Answer.P50 < r.Truth.P50) {
			t.Errorf("a receipt cannot answer enforced before the gateways applied it: %+v", r)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
