package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionguard/revoke/internal/proc"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
)

// runFleet simulates a fleet of gateways, as a process of its own: one
// ordered consumer follows REVOCATIONS for all of them, and each simulated
// gateway reports on gateway.v1.applied exactly as gatewayd's Reporter
// does: a hello at start, at once after applying an awaited revocation
// (events.HeaderAwaited), other progress at most every -interval, and a
// heartbeat every second (the heartbeats spread over the second, as
// gateways started at different times are).
func runFleet(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats", "", "NATS URL")
	n := fs.Int("gateways", 1000, "simulated gateways")
	interval := fs.Duration("interval", 100*time.Millisecond, "GATEWAY_REPORT_INTERVAL of the simulated gateways")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *natsURL == "" || *n < 1 {
		return errors.New("fleet needs -nats and -gateways ≥ 1")
	}
	nc, err := nats.Connect(*natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var applied atomic.Uint64
	if s, err := js.Stream(ctx, events.StreamRevocations); err == nil {
		if info, err := s.Info(ctx); err == nil {
			applied.Store(info.State.LastSeq)
		}
	}
	awaited := make(chan struct{}, 1)
	cons, err := js.OrderedConsumer(ctx, events.StreamRevocations, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if meta, err := m.Metadata(); err == nil {
			applied.Store(meta.Sequence.Stream)
		}
		if m.Headers().Get(events.HeaderAwaited) != "" {
			select {
			case awaited <- struct{}{}:
			default:
			}
		}
	}, jetstream.PullMaxMessages(4096))
	if err != nil {
		return err
	}
	defer cc.Stop()

	type sim struct {
		id, name string
		last     time.Time
		reported uint64
	}
	started := time.Now().UTC()
	fleet := make([]sim, *n)
	for i := range fleet {
		// The heartbeat phases spread over a second.
		fleet[i] = sim{id: uuid.NewString(), name: fmt.Sprintf("sim-%04d", i), last: time.Now().Add(-time.Duration(i) * time.Second / time.Duration(*n))}
	}
	var mu sync.Mutex
	report := func(g *sim, now time.Time) {
		seq := applied.Load()
		data, err := events.Encode(events.GatewayApplied{GatewayID: g.id, Name: g.name, Version: "simulated", StartedAt: started,
			AppliedSeq: seq, StreamLastSeq: seq, State: events.GatewayCurrent, At: now.UTC()})
		if err == nil {
			_ = nc.Publish(events.SubjectGatewayApplied, data)
		}
		g.last, g.reported = now, seq
	}
	mu.Lock()
	for i := range fleet {
		report(&fleet[i], time.Now()) // hello
	}
	mu.Unlock()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-awaited:
			mu.Lock()
			now := time.Now()
			for i := range fleet {
				report(&fleet[i], now)
			}
			mu.Unlock()
		case now := <-tick.C:
			mu.Lock()
			seq := applied.Load()
			for i := range fleet {
				g := &fleet[i]
				since := now.Sub(g.last)
				if since >= time.Second || (g.reported < seq && since >= *interval) {
					report(g, now)
				}
			}
			mu.Unlock()
		}
	}
}

// fleetResult is the fleet scenario's figures.
type fleetResult struct {
	Simulated int     `json:"simulated_gateways"`
	Interval  float64 `json:"report_interval_ms"`
	// Idle: sessiond's CPU (cores) with no revocations, without and with
	// the simulated fleet.
	IdleCoresWithout float64 `json:"idle_cores_without"`
	IdleCoresWith    float64 `json:"idle_cores_with"`
	// Throughput: closed-loop revocations, rounds alternating without and
	// with the fleet; medians.
	RevokeWithout   []float64 `json:"revocations_per_sec_without"`
	RevokeWith      []float64 `json:"revocations_per_sec_with"`
	CPUWithout      []float64 `json:"sessiond_cpu_per_revocation_ms_without"`
	CPUWith         []float64 `json:"sessiond_cpu_per_revocation_ms_with"`
	ThroughputRatio float64   `json:"throughput_with_over_without"`
	// ReportsPerSec is what sessiond heard during the "with" runs.
	ReportsPerSec float64 `json:"reports_per_sec_with"`
	// SessiondFleetCores is what the fleet cost sessiond under load: its
	// extra CPU per revocation times the rate.
	SessiondFleetCores float64 `json:"sessiond_fleet_cores_under_load"`
	// SimulatorCores and NATSCoresWith are the CPU the simulator and NATS
	// took on the same machine during the "with" runs: what the throughput
	// lost to them is not sessiond's.
	SimulatorCores float64 `json:"simulator_cores"`
	NATSCoresWith  float64 `json:"nats_cores_with"`
}

// fleetScenario measures what a simulated fleet costs sessiond: its CPU
// when nothing is revoked, and the revocation throughput with and without
// it, in alternating rounds (sessiond's silence timeout is shortened for
// the run, so the fleet leaves between rounds).
func fleetScenario(ctx context.Context, e *benchEnv, o options, res *results) error {
	r := fleetResult{Simulated: o.fleet, Interval: ms(o.fleetEvery)}
	pid := e.sessiond.Pid()
	idle := func() float64 {
		c0, t0 := procCPU(pid), time.Now()
		time.Sleep(10 * time.Second)
		return round((procCPU(pid) - c0).Seconds() / time.Since(t0).Seconds())
	}
	f, err := e.makeSessions(ctx, int(5000*o.duration.Seconds()*float64(o.rounds)*2)/50+1, 50)
	if err != nil {
		return err
	}
	next := 0
	take := func() []string {
		s := f.sessions[next:]
		next += int(5000 * o.duration.Seconds())
		return s[:min(len(s), int(5000*o.duration.Seconds()))]
	}
	start := func() (*proc.Proc, error) {
		p, err := e.spawn(ctx, "fleet", nil, "fleet", "-nats", e.natsURL, "-gateways", fmt.Sprint(o.fleet), "-interval", o.fleetEvery.String())
		if err != nil {
			return nil, err
		}
		return p, e.waitFleet(ctx, len(e.gateways)+o.fleet)
	}
	stop := func(p *proc.Proc) error {
		p.Stop()
		return e.waitFleet(ctx, len(e.gateways))
	}
	fmt.Fprintln(e.log, "  idle, without the fleet")
	r.IdleCoresWithout = idle()
	p, err := start()
	if err != nil {
		return err
	}
	fmt.Fprintln(e.log, "  idle, with", o.fleet, "simulated gateways")
	r.IdleCoresWith = idle()
	if err := stop(p); err != nil {
		return err
	}
	var heard float64
	var simCores, natsCores []float64
	for rnd := 1; rnd <= o.rounds; rnd++ {
		w, err := revokeRun(ctx, e, take(), o.concurrency, o.duration)
		if err != nil {
			return err
		}
		p, err := start()
		if err != nil {
			return err
		}
		profile := ""
		if o.profile != "" && rnd == 1 {
			profile = o.profile + ".fleet"
		}
		wait := e.profile(ctx, o.duration, profile)
		m0 := e.reportsHeard(ctx)
		t0 := time.Now()
		sim0, nats0 := procCPU(p.Pid()), procCPU(e.natsProc.Pid())
		x, err := revokeRun(ctx, e, take(), o.concurrency, o.duration)
		if perr := wait(); perr != nil && err == nil {
			err = perr
		}
		secs := time.Since(t0).Seconds()
		heard += (e.reportsHeard(ctx) - m0) / secs
		simCores = append(simCores, round((procCPU(p.Pid())-sim0).Seconds()/secs))
		natsCores = append(natsCores, round((procCPU(e.natsProc.Pid())-nats0).Seconds()/secs))
		if err != nil {
			return err
		}
		if err := stop(p); err != nil {
			return err
		}
		r.RevokeWithout, r.RevokeWith = append(r.RevokeWithout, w.PerSec), append(r.RevokeWith, x.PerSec)
		r.CPUWithout, r.CPUWith = append(r.CPUWithout, w.SessiondCPUPerRevocationMs), append(r.CPUWith, x.SessiondCPUPerRevocationMs)
		fmt.Fprintf(e.log, "  round %d: %.0f/s without, %.0f/s with the fleet\n", rnd, w.PerSec, x.PerSec)
	}
	r.ThroughputRatio = round(median(r.RevokeWith) / median(r.RevokeWithout))
	r.ReportsPerSec = round(heard / float64(o.rounds))
	r.SimulatorCores, r.NATSCoresWith = median(simCores), median(natsCores)
	r.SessiondFleetCores = round((median(r.CPUWith) - median(r.CPUWithout)) / 1000 * median(r.RevokeWith))
	res.Fleet = r
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// waitFleet waits until GET /v1/gateways lists n gateways.
func (e *benchEnv) waitFleet(ctx context.Context, n int) error {
	var got int
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var body struct {
			Gateways []struct{} `json:"gateways"`
		}
		if code, err := e.call(ctx, "GET", "/v1/gateways", e.admin, nil, &body); err == nil && code == 200 {
			if got = len(body.Gateways); got == n {
				return nil
			}
		}
	}
	return fmt.Errorf("the fleet has %d gateways, want %d", got, n)
}
