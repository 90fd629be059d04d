package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/sessionguard/revoke/internal/proc"
)

// The nemesis's kinds of fault.
const (
	faultKill     = "kill"             // SIGKILL, then started again
	faultPause    = "pause"            // SIGSTOP, then SIGCONT
	faultPostgres = "restart_postgres" // stopped, then started on the same data
	faultCutLeaf  = "cut_leaf"         // the PoP's WAN cut, then healed
	// A gateway's wall clock stepped by Offset (within the token leeway),
	// then back: it must change nothing, so it excuses nothing either.
	faultClock = "clock_step"
	// A NATS node's disk throttled (slowdisk.go), then freed.
	faultSlowDisk = "slow_disk"
)

// fault is one step of the nemesis's schedule: after Gap (from the heal of
// the one before), Kind is done to Target for Hold, then healed.
type fault struct {
	Gap    time.Duration `json:"gap"`
	Kind   string        `json:"kind"`
	Target string        `json:"target"`
	Hold   time.Duration `json:"hold"`
	Offset time.Duration `json:"offset,omitempty"` // clock_step
}

// plan is the nemesis's schedule for a seed: the same faults, targets and
// durations in the same order for the same seed, whatever the machine.
// Long enough for any run (it stops when the run does).
func plan(seed int64, n int) []fault {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	type choice struct {
		kind    string
		targets []string
		weight  int
	}
	sessiond := []string{"sessiond-1", "sessiond-2"}
	gateways := []string{"gateway-1", "gateway-2", "gateway-3", "gateway-4"}
	nats := []string{"nats-1", "nats-2", "nats-3"}
	choices := []choice{
		{faultKill, sessiond, 4}, {faultPause, sessiond, 3},
		{faultKill, gateways, 4}, {faultPause, gateways, 3},
		{faultKill, nats, 4}, {faultPause, nats, 3},
		{faultPostgres, []string{"postgres"}, 2},
		{faultCutLeaf, []string{"leaf-link"}, 3},
		{faultClock, gateways, 3},
		{faultSlowDisk, nats, 3},
	}
	total := 0
	for _, c := range choices {
		total += c.weight
	}
	out := make([]fault, n)
	for i := range out {
		r := rng.IntN(total)
		var c choice
		for _, c = range choices {
			if r < c.weight {
				break
			}
			r -= c.weight
		}
		out[i] = fault{
			Gap:    time.Duration(100+rng.IntN(600)) * time.Millisecond,
			Kind:   c.kind,
			Target: c.targets[rng.IntN(len(c.targets))],
			Hold:   time.Duration(300+rng.IntN(1500)) * time.Millisecond,
		}
		if c.kind == faultClock {
			// 1 to 20 s either way: inside the 30 s token leeway.
			out[i].Offset = time.Duration(1000+rng.IntN(19000)) * time.Millisecond
			if rng.IntN(2) == 0 {
				out[i].Offset = -out[i].Offset
			}
			out[i].Hold += 2 * time.Second // long enough to serve checks on the stepped clock
		}
		if c.kind == faultSlowDisk {
			out[i].Hold += 3 * time.Second // a few of the node's syncs
		}
	}
	return out
}

// digest names a plan in the history's header.
func digest(p []fault) string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// nemesis runs the plan against the system, one fault at a time, and
// records each with when it began, when it was healed, and when the whole
// system was healthy again.
type nemesis struct {
	s   *system
	rec *recorder
	log func(format string, args ...any)
}

// run works through the plan until stop is closed (a fault in progress is
// healed first) and returns how many faults of each kind it injected.
func (n *nemesis) run(ctx context.Context, p []fault, stop <-chan struct{}) map[string]int {
	done := map[string]int{}
	for _, f := range p {
		select {
		case <-stop:
			return done
		case <-ctx.Done():
			return done
		case <-time.After(f.Gap):
		}
		op := Op{Kind: opFault, Fault: f.Kind, Target: f.Target, Start: time.Now()}
		var details []string
		if f.Kind == faultClock {
			details = append(details, "offset "+f.Offset.String())
		}
		heal, err := n.inject(ctx, f, &details)
		if err != nil {
			op.Err = err.Error()
		}
		time.Sleep(f.Hold)
		if heal != nil {
			if err := heal(); err != nil && op.Err == "" {
				op.Err = err.Error()
			}
		}
		op.End = time.Now()
		// Healthy again: every stream led and replicated, every process
		// ready. A minute is far past any recovery the system should need.
		// Detail keeps what it waited for, each with when it began to.
		var waited []string
		last := ""
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
			why := n.s.unhealthy(ctx)
			if why == "" {
				op.Healed = time.Now()
				break
			}
			if why != last {
				waited = append(waited, fmt.Sprintf("+%.1fs %s", time.Since(op.End).Seconds(), why))
				last = why
			}
		}
		if len(waited) > 0 {
			details = append(details, "waited for: "+strings.Join(waited, "; "))
		}
		op.Detail = strings.Join(details, "; ")
		n.rec.add(op)
		done[f.Kind+" "+targetKind(f.Target)]++
		if op.Healed.IsZero() {
			n.log("nemesis: %s of %s never healed; stopping", f.Kind, f.Target)
			return done
		}
	}
	return done
}

func targetKind(t string) string {
	if k, _, ok := strings.Cut(t, "-"); ok && k != "leaf" {
		return k // sessiond-1, gateway-3, nats-2
	}
	return t // postgres, leaf-link
}

// inject does f and returns how to heal it.
func (n *nemesis) inject(ctx context.Context, f fault, details *[]string) (func() error, error) {
	s := n.s
	switch f.Kind {
	case faultPostgres:
		if err := s.stopPostgres(ctx); err != nil {
			return nil, err
		}
		return func() error { return s.startPostgres(ctx) }, nil
	case faultCutLeaf:
		for _, r := range s.relays {
			if err := r.Signal(syscall.SIGUSR1); err != nil {
				return nil, err
			}
		}
		return func() error {
			for _, r := range s.relays {
				if err := r.Signal(syscall.SIGUSR2); err != nil {
					return err
				}
			}
			return nil
		}, nil
	}
	if f.Kind == faultClock {
		g := s.gateway(f.Target)
		if g == nil {
			return nil, fmt.Errorf("no gateway %s", f.Target)
		}
		if err := s.stepClock(ctx, g, f.Offset); err != nil {
			return nil, err
		}
		return func() error { return s.stepClock(ctx, g, 0) }, nil
	}
	p := s.process(f.Target)
	if p == nil {
		return nil, fmt.Errorf("no process %s", f.Target)
	}
	switch f.Kind {
	case faultSlowDisk:
		pid := p.Pid()
		ops, bytes := s.slow.served()
		if err := s.slow.slow(pid); err != nil {
			return nil, err
		}
		return func() error {
			o, b := s.slow.served()
			*details = append(*details, fmt.Sprintf("%d disk operations (%d KiB) throttled", o-ops, (b-bytes)>>10))
			return s.slow.fast(pid)
		}, nil
	case faultKill:
		p.Kill()
		return p.Restart, nil
	case faultPause:
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		return func() error { return p.Signal(syscall.SIGCONT) }, nil
	}
	return nil, fmt.Errorf("unknown fault %s", f.Kind)
}

func (s *system) gateway(name string) *service {
	for _, g := range s.gateways {
		if g.name == name {
			return g
		}
	}
	return nil
}

// stepClock sets a gateway's clock offset (gatewayd's DEBUG_CLOCK_OFFSET
// and PUT /debug/clock).
func (s *system) stepClock(ctx context.Context, g *service, offset time.Duration) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, g.debug+"/debug/clock?offset="+url.QueryEscape(offset.String()), nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("step the clock of %s: %w", g.name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("step the clock of %s: %s", g.name, resp.Status)
	}
	return nil
}

// process finds a target by name.
func (s *system) process(name string) *proc.Proc {
	for _, p := range s.nats {
		if p.Name() == name {
			return p
		}
	}
	for _, sv := range append(append([]*service(nil), s.sessiond...), s.gateways...) {
		if sv.name == name {
			return sv.p
		}
	}
	return nil
}
