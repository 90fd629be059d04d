// Command revokebench is the project's load tool. It starts a private
// PostgreSQL (fsync on), NATS JetStream in a process of its own, a real
// sessiond process and N real gatewayd processes over loopback, and
// measures:
//
//   - propagation: revocation receipts, open loop at each of -rates, side by
//     side with the bare mechanism (a durable commit, a publish, gateways
//     that apply and report) in alternating rounds. Every revocation is
//     sent at its scheduled instant and measured from it: the answer of its
//     Prefer: wait=5 call, the gateways' own reports of when they applied it
//     (the ground truth), and a check at every gateway that a revocation
//     said enforced is refused there;
//   - gateway throughput for /v1/check and the proxy with a mix of valid,
//     revoked and invalid tokens, side by side with a bare 200 handler, a
//     bare httputil.ReverseProxy and (when installed) NGINX auth_request;
//   - revocation throughput with sessiond's CPU per revocation (and, with
//     -profile, its CPU profile), and an org-wide revoke of 100k sessions;
//   - fleet: what 1,000 simulated gateways cost sessiond, idle and under
//     revocations, in alternating rounds;
//   - a gateway's cold start replaying 1M live revocations: time and RSS;
//   - Shared Signals: CAEP SETs pushed to receivers on loopback, timed from
//     each revocation's scheduled instant, beside the RS256 signing floor;
//     RFC 7662 introspection throughput beside a bare 200 handler;
//   - points of presence: with -topology pop the gateways sit behind NATS
//     leaf nodes; leafhop times the same revocations behind a leaf and
//     direct, hubcpu the hub's CPU per revocation with one direct gateway
//     and with leaves of several gateways, partition a PoP's fail-closed
//     and recovery when its link is cut and healed.
//
// The bare servers, NATS (hub and leaves), the WAN relay and the fleet
// simulator are this binary in other modes ("bare", "nats", "relay",
// "fleet"), each a process of its own, so the tool's own work never runs
// inside what it measures. It prints a table, writes
// JSON, and draws the receipt latency distribution as SVG. Everything stays
// on 127.0.0.1 and stops by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/wanlink"
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
	rates       []int
	rounds      int
	duration    time.Duration
	concurrency int
	orgSessions int
	coldEntries int
	binDir      string
	out         string
	svg         string
	keep        bool
	profile     string
	fleet       int
	fleetEvery  time.Duration
	ruleRuns    int
	ruleFilters map[string]bool
	ssfStreams  int
	outage      time.Duration
	outageRate  int
	// -topology pop: the gateways sit behind leaves leaf nodes; the hubcpu
	// scenario's points of presence have leafGateways gateways each.
	topology           string
	leaves             int
	leafGateways       int
	partitionStaleness time.Duration
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "bare":
			return runBare(ctx, args[2:], stderr)
		case "nats":
			return natsx.Main(ctx, args[2:], stderr)
		case "fleet":
			return runFleet(ctx, args[2:], stderr)
		case "relay":
			return wanlink.Main(ctx, args[2:], stderr)
		}
	}
	fs := flag.NewFlagSet("revokebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.scenarios, "scenario", "all", "comma-separated: propagation, throughput, revoke, orgwide, orgrule, fleet, coldstart, ssf, introspect, fresh, partition, or all; by name only: ssfoutage (ten minutes), leafhop (with -topology pop), hubcpu (best alone)")
	fs.IntVar(&o.gateways, "gateways", 8, "gatewayd processes")
	rates := fs.String("rates", "100,500", "comma-separated revocations per second of the propagation scenario")
	fs.IntVar(&o.rounds, "rounds", 3, "alternating rounds of the floor and sessiond per rate (propagation)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each timed run")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent clients in the throughput runs")
	fs.IntVar(&o.orgSessions, "org-sessions", 100_000, "sessions in the org of the org-wide revoke")
	fs.IntVar(&o.coldEntries, "cold-entries", 1_000_000, "live revocations replayed by a cold gateway")
	fs.StringVar(&o.binDir, "bin", "", "directory with sessiond and gatewayd (default: built into a temporary directory)")
	fs.StringVar(&o.out, "out", "revokebench.json", "JSON results file")
	fs.StringVar(&o.svg, "svg", "revokebench-latency.svg", "SVG of the propagation latency distribution")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, data)")
	fs.IntVar(&o.ruleRuns, "rule-runs", 20, "runs of the orgrule scenario, each over a new org of -org-sessions sessions")
	ruleFilters := fs.String("rule-filters", "org,device_type", "the orgrule scenario's filters: org (one rule), device_type (session by session; a fifth of the runs)")
	fs.IntVar(&o.fleet, "fleet", 1000, "simulated gateways in the fleet scenario")
	fs.DurationVar(&o.fleetEvery, "fleet-interval", 100*time.Millisecond, "the simulated gateways' GATEWAY_REPORT_INTERVAL")
	fs.IntVar(&o.ssfStreams, "ssf-streams", 10, "Shared Signals push streams of the ssf scenario (it runs at each of -rates)")
	fs.DurationVar(&o.outage, "outage", 10*time.Minute, "how long the ssfoutage scenario's push receiver is down")
	fs.IntVar(&o.outageRate, "outage-rate", 20, "revocations per second while the ssfoutage scenario's receiver is down")
	fs.StringVar(&o.topology, "topology", "direct", "direct: every gateway on the hub's NATS; pop: a hub plus -leaves NATS leaf nodes (points of presence, each a process with a JetStream domain and a mirror of REVOCATIONS), the gateways spread over them")
	fs.IntVar(&o.leaves, "leaves", 4, "leaf nodes of -topology pop and of the hubcpu scenario")
	fs.IntVar(&o.leafGateways, "leaf-gateways", 4, "gateways on each leaf node of the hubcpu scenario")
	fs.DurationVar(&o.partitionStaleness, "partition-staleness", 2*time.Second, "GATEWAY_MAX_STALENESS of the partition scenario's gateway")
	fs.StringVar(&o.profile, "profile", "", "write sessiond's CPU profile during the revoke scenario to this file (go tool pprof reads it)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	o.ruleFilters = map[string]bool{}
	for _, f := range splitComma(*ruleFilters) {
		if f != "org" && f != "device_type" {
			return fmt.Errorf("-rule-filters: %q is not org or device_type", f)
		}
		o.ruleFilters[f] = true
	}
	for _, f := range splitComma(*rates) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return fmt.Errorf("-rates: %q is not a positive number", f)
		}
		o.rates = append(o.rates, n)
	}
	if o.topology != "direct" && o.topology != "pop" {
		return fmt.Errorf("-topology: %q is not direct or pop", o.topology)
	}
	if o.leaves < 1 || o.leafGateways < 1 || o.partitionStaleness <= 0 {
		return errors.New("leaves, leaf-gateways and partition-staleness must be positive")
	}
	if o.gateways < 1 || len(o.rates) == 0 || o.rounds < 1 || o.duration <= 0 || o.concurrency < 1 {
		return errors.New("gateways, rates, rounds, duration and concurrency must be positive")
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
	res := &results{Started: time.Now().UTC(), Gateways: o.gateways, Topology: o.topology, Machine: machine()}
	if o.topology == "pop" {
		res.Leaves = o.leaves
	}
	for _, sc := range []struct {
		name string
		run  func(context.Context, *benchEnv, options, *results) error
	}{
		{"propagation", propagation},
		{"throughput", throughput},
		{"revoke", revokeThroughput},
		{"orgwide", orgWide},
		{"orgrule", orgRule},
		{"fleet", fleetScenario},
		{"coldstart", coldStart},
		{"ssf", ssfScenario},
		{"introspect", introspectScenario},
		{"ssfoutage", outageScenario},
		{"fresh", freshScenario},
		{"leafhop", leafHop},
		{"partition", partition},
		{"hubcpu", hubCPU},
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
		title := fmt.Sprintf("scheduled send → receipt enforced at all %d gateways (%d revocations/s, open loop)", o.gateways, o.rates[len(o.rates)-1])
		if err := writeSVG(o.svg, res.Propagation.SamplesMs, title); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", o.out, o.svg)
	if n := res.Propagation.problems(); n > 0 {
		return fmt.Errorf("%d revocations were not sent, failed, were not enforced within the wait, or were still accepted by a gateway after their receipt said enforced (see %s)", n, o.out)
	}
	return nil
}

func parseScenarios(s string) (map[string]bool, error) {
	all := []string{"propagation", "throughput", "revoke", "orgwide", "orgrule", "fleet", "coldstart", "ssf", "introspect", "fresh", "partition"}
	// By name only: ssfoutage is ten minutes long, leafhop needs -topology
	// pop, hubcpu wants a hub nothing else has used.
	named := append(all, "ssfoutage", "leafhop", "hubcpu")
	out := map[string]bool{}
	for _, f := range splitComma(s) {
		if f == "all" {
			for _, a := range all {
				out[a] = true
			}
			continue
		}
		ok := false
		for _, a := range named {
			ok = ok || a == f
		}
		if !ok {
			return nil, fmt.Errorf("unknown scenario %q", f)
		}
		out[f] = true
	}
	return out, nil
}
