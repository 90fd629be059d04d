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
		case "bare", "nats", "fleet", "relay":
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
	res := runTool(t, "-scenario", "propagation", "-rates", "40", "-rounds", "1", "-duration", "1s", "-gateways", "2")
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

// TestAPointOfPresenceMeasured runs the load tool with -topology pop,
// briefly: a hub and a leaf node as processes of their own, a gateway
// behind the leaf and, for the leafhop scenario, one on the hub. Every
// revocation is timed at both; the partition scenario's PoP fails closed
// when its link is cut and recovers when it heals, and the token revoked
// meanwhile is never accepted after the heal.
func TestAPointOfPresenceMeasured(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	res := runTool(t, "-topology", "pop", "-leaves", "1", "-gateways", "1", "-scenario", "leafhop,partition",
		"-rates", "40", "-rounds", "1", "-duration", "1s", "-partition-staleness", "1s")
	if res.Topology != "pop" || res.Leaves != 1 {
		t.Errorf("topology %q with %d leaves", res.Topology, res.Leaves)
	}
	h := res.LeafHop
	if h.LeafGateways != 1 || h.DirectGateways != 1 || len(h.Runs) != 1 || len(h.Summary) != 1 {
		t.Fatalf("leaf hop: %+v", h)
	}
	if r := h.Runs[0]; r.Revocations != 40 || r.Problems != 0 || r.Direct.N != 40 || r.Leaf.N != 40 || r.Paired.N != 40 || r.Leaf.P50 <= 0 || r.Direct.P50 <= 0 {
		t.Errorf("every revocation is timed behind the leaf and direct: %+v", r)
	}
	p := res.Partition
	if len(p.Runs) != 1 || p.MaxStalenessSec != 1 {
		t.Fatalf("partition: %+v", p)
	}
	if r := p.Runs[0]; r.Violations != 0 || r.FailClosedMs <= 0 || r.EnforcedMs <= 0 || r.ServingMs <= 0 {
		t.Errorf("partition round: %+v", r)
	}
}

// runTool builds sessiond and gatewayd, runs the load tool with args and
// returns its JSON results.
func runTool(t *testing.T, args ...string) results {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "../sessiond", "../gatewayd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "result.json")
	args = append([]string{"revokebench", "-bin", bin, "-out", out, "-svg", filepath.Join(dir, "latency.svg")}, args...)
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
	return res
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
