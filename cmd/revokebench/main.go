// Command revokebench is the project's load tool. It starts a private
// PostgreSQL (fsync on), an embedded NATS JetStream server, a real sessiond
// process and N real gatewayd processes over loopback, and measures:
//
//   - propagation: revocations at a steady rate through the API, and the
//     time from a revoke call's start to the first 401 at every gateway;
//   - gateway throughput for /v1/check and the proxy with a mix of valid,
//     revoked and invalid tokens, side by side with a bare 200 handler, a
//     bare httputil.ReverseProxy and (when installed) NGINX auth_request;
//   - revocation throughput, and an org-wide revoke of 100k sessions;
//   - a gateway's cold start replaying 1M live revocations: time and RSS.
//
// It prints a table, writes JSON, and draws the propagation latency
// distribution as SVG. Everything stays on 127.0.0.1 and stops by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "revokebench:", err)
		os.Exit(1)
	}
}

// options are the tool's flags.
type options struct {
	scenarios   string
	gateways    int
	rate        int
	probeEvery  time.Duration
	duration    time.Duration
	concurrency int
	orgSessions int
	coldEntries int
	binDir      string
	out         string
	svg         string
	keep        bool
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "bare" {
		return runBare(ctx, args[2:], stderr)
	}
	fs := flag.NewFlagSet("revokebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.scenarios, "scenario", "all", "comma-separated: propagation, throughput, revoke, orgwide, coldstart, or all")
	fs.IntVar(&o.gateways, "gateways", 8, "gatewayd processes")
	fs.IntVar(&o.rate, "rate", 500, "revocations per second in the propagation scenario")
	fs.DurationVar(&o.probeEvery, "probe-every", 20*time.Millisecond, "one revocation in this interval is probed at every gateway")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each timed run")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent clients in the throughput runs")
	fs.IntVar(&o.orgSessions, "org-sessions", 100_000, "sessions in the org of the org-wide revoke")
	fs.IntVar(&o.coldEntries, "cold-entries", 1_000_000, "live revocations replayed by a cold gateway")
	fs.StringVar(&o.binDir, "bin", "", "directory with sessiond and gatewayd (default: built into a temporary directory)")
	fs.StringVar(&o.out, "out", "revokebench.json", "JSON results file")
	fs.StringVar(&o.svg, "svg", "revokebench-latency.svg", "SVG of the propagation latency distribution")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, data)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if o.gateways < 1 || o.rate < 1 || o.duration <= 0 || o.concurrency < 1 {
		return errors.New("gateways, rate, duration and concurrency must be positive")
	}
	want, err := parseScenarios(o.scenarios)
	if err != nil {
		return err
	}
	// Hard stop: the tool never runs away.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()

	env, err := startEnv(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	res := &results{Started: time.Now().UTC(), Gateways: o.gateways, Machine: machine()}
	for _, sc := range []struct {
		name string
		run  func(context.Context, *benchEnv, options, *results) error
	}{
		{"propagation", propagation},
		{"throughput", throughput},
		{"revoke", revokeThroughput},
		{"orgwide", orgWide},
		{"coldstart", coldStart},
	} {
		if !want[sc.name] {
			continue
		}
		fmt.Fprintf(stderr, "== %s\n", sc.name)
		if err := sc.run(ctx, env, o, res); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	res.Finished = time.Now().UTC()
	printTable(stdout, res)
	if err := writeJSON(o.out, res); err != nil {
		return err
	}
	if len(res.Propagation.SamplesMs) > 0 {
		if err := writeSVG(o.svg, res.Propagation.SamplesMs, fmt.Sprintf("revoke call start → first 401 at each of %d gateways (%d revocations/s)", o.gateways, o.rate)); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", o.out, o.svg)
	return nil
}

func parseScenarios(s string) (map[string]bool, error) {
	all := []string{"propagation", "throughput", "revoke", "orgwide", "coldstart"}
	out := map[string]bool{}
	for _, f := range splitComma(s) {
		if f == "all" {
			for _, a := range all {
				out[a] = true
			}
			continue
		}
		ok := false
		for _, a := range all {
			ok = ok || a == f
		}
		if !ok {
			return nil, fmt.Errorf("unknown scenario %q", f)
		}
		out[f] = true
	}
	return out, nil
}
