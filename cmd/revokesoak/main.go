// Command revokesoak is the project's fault soak: a randomized nemesis
// against the whole system on real processes, a workload that records
// every operation it makes, and a checker that proves afterwards that no
// invariant broke (Jepsen's histories and checkers, on one machine).
//
// It starts PostgreSQL, a three-node NATS JetStream cluster with R3
// streams and a leaf node (a point of presence, behind three relays: its
// WAN), two sessiond replicas and four gateways (two on the hub, two in
// the PoP), all processes of their own. Clients log in, refresh, present
// tokens at the gateways, reuse rotated refresh tokens, log out, revoke
// (their own sessions, as an admin, a user's every session, in bulk) and
// publish erasure requests, while the nemesis, every second or two, kills
// or pauses a sessiond replica, a gateway or a NATS node, restarts
// PostgreSQL or cuts the PoP's link, and heals it. Every operation goes to
// the history (JSON lines) with its start, end and outcome; at the end,
// the checker reads it and reports every violation with the excerpt of
// the history that shows it. The fault schedule follows from -seed alone.
//
//	go run ./cmd/revokesoak -duration 2m -seed 1      # the CI soak
//	go run ./cmd/revokesoak -duration 30m -seed 7     # a long one
//	go run ./cmd/revokesoak -check soak-history.jsonl # check a history again
//
// NATS and the relays are this binary in other modes ("nats", "relay").
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/proc"
	"github.com/sessionguard/revoke/internal/wanlink"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "revokesoak:", err)
		os.Exit(1)
	}
}

// errViolations is returned when the checker found any.
var errViolations = errors.New("invariants broken")

type options struct {
	duration    time.Duration
	seed        int64
	clients     int
	staleness   time.Duration
	propagation time.Duration
	grace       time.Duration
	history     string
	check       string
	binDir      string
	keep        bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "nats":
			return natsx.Main(ctx, args[2:], stderr)
		case "relay":
			return wanlink.Main(ctx, args[2:], stderr)
		}
	}
	fs := flag.NewFlagSet("revokesoak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "how long the workload and the nemesis run")
	fs.Int64Var(&o.seed, "seed", 1, "the seed of the fault schedule and the clients' choices")
	fs.IntVar(&o.clients, "clients", 6, "concurrent clients, each with users of its own")
	fs.DurationVar(&o.staleness, "staleness", 3*time.Second, "the gateways' GATEWAY_MAX_STALENESS")
	fs.DurationVar(&o.propagation, "propagation", 500*time.Millisecond, "how long past the staleness bound a confirmed revocation may take to be refused everywhere when no fault is active")
	fs.DurationVar(&o.grace, "grace", 5*time.Second, "how long after a fault heals its effects may last (5xx, a gateway catching up)")
	fs.StringVar(&o.history, "history", "soak-history.jsonl", "the history file (JSON lines)")
	fs.StringVar(&o.check, "check", "", "check this history file and exit (no run)")
	fs.StringVar(&o.binDir, "bin", "", "directory with sessiond and gatewayd (default: built into the run's directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the run's directory (logs, data)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if o.check != "" {
		return checkFile(o.check, stdout)
	}
	if o.duration <= 0 || o.clients < 1 || o.staleness <= 0 {
		return errors.New("duration, clients and staleness must be positive")
	}
	return soakRun(ctx, o, stdout, stderr)
}

func checkFile(path string, stdout io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, ops, err := readHistory(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sum := summarise(h, ops)
	printSummary(stdout, sum)
	vs := check(h, ops)
	if len(vs) > 0 {
		report(stdout, h.Seed, vs)
		return fmt.Errorf("%w: %d (seed %d, history %s)", errViolations, len(vs), h.Seed, path)
	}
	fmt.Fprintf(stdout, "no violations of the %d invariants\n", len(invariants))
	return nil
}

// invariants are the ones the checker holds a history to.
var invariants = []string{invRevokedAccepted, invLiveRefused, invAudit, invErasure, invOutbox, invRefreshHeads, invNo5xx, invRecovered, invRevokedInDB, invReuse}

// soakRun runs the system, the clients and the nemesis for o.duration, then
// finishes the history.
func soakRun(ctx context.Context, o options, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return err
	}
	_ = os.Chmod(dir, 0o755)
	keep := o.keep
	defer func() {
		if keep {
			fmt.Fprintf(stderr, "the run's logs and data are in %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	bin := o.binDir
	if bin == "" {
		bin = filepath.Join(dir, "bin")
		logf("building sessiond and gatewayd")
		if err := proc.Build(ctx, bin, stderr, "./cmd/sessiond", "./cmd/gatewayd"); err != nil {
			return err
		}
	}
	logf("starting PostgreSQL, 3 NATS nodes and a leaf node, 2 sessiond replicas and 4 gateways in %s", dir)
	s, err := startSystem(ctx, dir, bin, o.staleness, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	var gws []string
	for _, g := range s.gateways {
		gws = append(gws, g.name)
	}
	faults := plan(o.seed, 100_000)
	rec, err := newRecorder(o.history, Header{Seed: o.seed, Started: time.Now().UTC(), Duration: o.duration.String(),
		Staleness: o.staleness, Propagation: o.propagation, Grace: o.grace, Gateways: gws, Plan: digest(faults)})
	if err != nil {
		return err
	}
	k := &soak{s: s, rec: rec, staleness: o.staleness, propagation: o.propagation}
	if err := k.setup(ctx); err != nil {
		rec.close()
		return err
	}
	stopObs, err := k.observeErasures(ctx)
	if err != nil {
		rec.close()
		return err
	}
	actx, cancelAdmin := context.WithCancel(ctx)
	defer cancelAdmin()
	go k.keepAdmin(actx)

	// The clients, each with three users and choices of its own.
	var clients []*client
	for i := range o.clients {
		c := &client{k: k, id: i + 1, rng: rand.New(rand.NewPCG(uint64(o.seed), uint64(i+1)))}
		for range 3 {
			if _, err := c.newUser(ctx); err != nil {
				rec.close()
				return err
			}
		}
		clients = append(clients, c)
	}
	logf("soak: %d clients and the nemesis for %s (seed %d, plan %s)", len(clients), o.duration, o.seed, digest(faults))
	wctx, stopWork := context.WithTimeout(ctx, o.duration)
	defer stopWork()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(wctx) }()
	}
	stopNemesis := make(chan struct{})
	injected := make(chan map[string]int, 1)
	n := &nemesis{s: s, rec: rec, log: logf}
	go func() { injected <- n.run(ctx, faults, stopNemesis) }()
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-wctx.Done():
			break wait
		case <-progress.C:
			logf("soak: %d operations so far", rec.count())
		}
	}
	close(stopNemesis)
	byKind := <-injected
	wg.Wait()
	stopWork()
	if ctx.Err() != nil {
		keep = true
		rec.close()
		return fmt.Errorf("interrupted after %d operations (history %s)", rec.count(), o.history)
	}
	var erased []*user
	for _, c := range clients {
		erased = append(erased, c.erased...)
	}
	logf("soak: workload and nemesis stopped after %d operations; checking the end state", rec.count())
	ferr := k.finish(ctx, clients, erased)
	time.Sleep(500 * time.Millisecond) // the last confirmations on their way to the observer
	stopObs()
	cancelAdmin()
	if err := rec.close(); err != nil {
		return err
	}
	kinds := make([]string, 0, len(byKind))
	for kind := range byKind {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		logf("  %-26s %d", kind, byKind[kind])
	}
	if ferr != nil {
		keep = true
		return fmt.Errorf("finishing the run (history %s): %w", o.history, ferr)
	}
	s.close() // before the check: a failing run keeps its logs whole
	if err := checkFile(o.history, stdout); err != nil {
		keep = true
		return err
	}
	return nil
}

// setup signs the admin in and makes the orgs the clients' users live in.
func (k *soak) setup(ctx context.Context) error {
	if err := k.adminLogin(ctx); err != nil {
		return err
	}
	for i := range 2 {
		a := k.call(ctx, k.s.sessiond[0].base, "POST", "/v1/orgs", k.adminToken(), map[string]string{"name": fmt.Sprintf("soak-%d-%d", time.Now().UnixNano(), i)})
		var out struct {
			ID string `json:"id"`
		}
		if a.status != 201 || json.Unmarshal(a.body, &out) != nil {
			return fmt.Errorf("create org: %d %s %s", a.status, a.err, a.body)
		}
		k.orgs = append(k.orgs, out.ID)
	}
	return nil
}

// summary is what a run did, for the table and RELIABILITY.md.
type summary struct {
	seed       int64
	duration   string
	ops        int
	byKind     map[string]int
	faults     map[string]int
	faultCount int
}

func summarise(h Header, ops []Op) summary {
	s := summary{seed: h.Seed, duration: h.Duration, byKind: map[string]int{}, faults: map[string]int{}}
	for _, op := range ops {
		switch op.Kind {
		case opFault:
			s.faults[op.Fault+" "+targetKind(op.Target)]++
			s.faultCount++
		case opFinal:
		default:
			s.ops++
			s.byKind[op.Kind]++
		}
	}
	return s
}

func printSummary(w io.Writer, s summary) {
	fmt.Fprintf(w, "soak: seed %d, %s, %d operations, %d faults\n", s.seed, s.duration, s.ops, s.faultCount)
	print := func(title string, m map[string]int) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
		fmt.Fprintf(w, "  %s: %s\n", title, strings.Join(parts, ", "))
	}
	print("operations", s.byKind)
	print("faults", s.faults)
}
