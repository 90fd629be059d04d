package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sessionguard/revoke/events"
)

// hubCPUResult is the hubcpu scenario's: the hub NATS server's CPU per
// revocation with one direct gateway, and with leaf nodes of several
// gateways each, in alternating rounds.
type hubCPUResult struct {
	Rate            int         `json:"rate_per_sec"`
	Revocations     int         `json:"revocations_per_round"`
	Leaves          int         `json:"leaves"`
	GatewaysPerLeaf int         `json:"gateways_per_leaf"`
	Runs            []hubCPURun `json:"runs"`
	// Medians over the rounds: µs of the hub's CPU per revocation over the
	// run (everything the hub did meanwhile, heartbeats and reports
	// included), and net of the idle rate measured before it.
	DirectUs    float64 `json:"direct_us_per_revocation"`
	PoPUs       float64 `json:"pop_us_per_revocation"`
	Ratio       float64 `json:"pop_vs_direct"`
	DirectNetUs float64 `json:"direct_net_us_per_revocation"`
	PoPNetUs    float64 `json:"pop_net_us_per_revocation"`
	NetRatio    float64 `json:"pop_vs_direct_net"`
}

type hubCPURun struct {
	Topology string `json:"topology"` // direct: one gateway on the hub; pop: leaves × gateways
	Round    int    `json:"round"`
	Gateways int    `json:"gateways"`
	// IdleMsPerSec is the hub's CPU per second, idle, before the run.
	IdleMsPerSec float64 `json:"idle_ms_per_sec"`
	UsPerRev     float64 `json:"us_per_revocation"`
	NetUsPerRev  float64 `json:"net_us_per_revocation"`
	Seconds      float64 `json:"seconds"`
	Failed       int64   `json:"failed"`
}

const hubCPUPrefix = "gatewayd-hubcpu-"

// hubCPU measures what points of presence cost the hub: its NATS server's
// CPU per revocation with a single direct gateway, and with -leaves leaf
// nodes of -leaf-gateways gateways each (every leaf's mirror one consumer
// of the hub's stream, every gateway's reports crossing to the hub), in
// alternating rounds at the highest of -rates. Nothing else follows the hub
// meanwhile: the run's own gateways and leaf nodes are stopped first and
// started again after. Run it on its own (-scenario hubcpu): what earlier
// scenarios leave running at the hub (SSF streams) is the same in both
// topologies but adds to both.
func hubCPU(ctx context.Context, e *benchEnv, o options, res *results) (err error) {
	gateways, leaves := len(e.gateways), len(e.leaves)
	e.stopGateways()
	for _, l := range e.leaves {
		l.proc.Stop()
	}
	e.leaves = nil
	defer func() {
		for i := range leaves {
			name := fmt.Sprintf("nats-leaf-%d", i)
			leaf, lerr := e.startLeaf(ctx, name, filepath.Join(e.dir, name), e.leafURL)
			if lerr != nil {
				err = errors.Join(err, lerr)
				return
			}
			e.leaves = append(e.leaves, leaf)
		}
		err = errors.Join(err, e.startGateways(ctx, gateways))
	}()
	rate := o.rates[len(o.rates)-1]
	n := int(float64(rate) * o.duration.Seconds())
	res.HubCPU = hubCPUResult{Rate: rate, Revocations: n, Leaves: o.leaves, GatewaysPerLeaf: o.leafGateways}
	var direct, pop, directNet, popNet []float64
	for round := 1; round <= o.rounds; round++ {
		for _, topo := range []string{"direct", "pop"} {
			run, err := e.hubRound(ctx, o, topo, rate, n)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", topo, round, err)
			}
			run.Round = round
			res.HubCPU.Runs = append(res.HubCPU.Runs, run)
			if topo == "direct" {
				direct, directNet = append(direct, run.UsPerRev), append(directNet, run.NetUsPerRev)
			} else {
				pop, popNet = append(pop, run.UsPerRev), append(popNet, run.NetUsPerRev)
			}
			fmt.Fprintf(e.log, "  round %d, %s (%d gateways): hub %.1f µs/revocation (%.1f net of %.1f ms/s idle)\n",
				round, topo, run.Gateways, run.UsPerRev, run.NetUsPerRev, run.IdleMsPerSec)
		}
	}
	h := &res.HubCPU
	h.DirectUs, h.PoPUs, h.DirectNetUs, h.PoPNetUs = round(median(direct)), round(median(pop)), round(median(directNet)), round(median(popNet))
	if h.DirectUs > 0 && h.DirectNetUs > 0 {
		h.Ratio, h.NetRatio = round(h.PoPUs/h.DirectUs), round(h.PoPNetUs/h.DirectNetUs)
	}
	return nil
}

// hubRound starts one topology's gateways (and leaves), measures the hub's
// CPU idle and through n revocations at rate, and stops them again.
func (e *benchEnv) hubRound(ctx context.Context, o options, topo string, rate, n int) (hubCPURun, error) {
	prefix := hubCPUPrefix + topo + "-"
	var gws []*gateway
	var leaves []*natsNode
	defer func() {
		for _, g := range gws {
			g.proc.Stop()
		}
		for _, l := range leaves {
			l.proc.Stop()
		}
	}()
	if topo == "direct" {
		g, err := e.startGateway(ctx, prefix+"0")
		if err != nil {
			return hubCPURun{}, err
		}
		gws = append(gws, g)
	} else {
		for i := range o.leaves {
			// The same store every round: the mirror resumes where it stopped.
			name := fmt.Sprintf("nats-hubcpu-%d", i)
			leaf, err := e.startLeaf(ctx, name, filepath.Join(e.dir, name), e.leafURL)
			if err != nil {
				return hubCPURun{}, err
			}
			leaves = append(leaves, leaf)
			for j := range o.leafGateways {
				g, err := e.startGateway(ctx, fmt.Sprintf("%s%d-%d", prefix, i, j), leaf.gatewayEnv()...)
				if err != nil {
					return hubCPURun{}, err
				}
				gws = append(gws, g)
			}
		}
	}
	f, err := e.makeSessions(ctx, n/10+1, 10)
	if err != nil {
		return hubCPURun{}, err
	}
	// Every gateway caught up and reporting; their hellos, the mirrors'
	// catch-up and the fleet's churn settled.
	seq0, err := e.waitApplied(ctx, prefix, len(gws), 0)
	if err != nil {
		return hubCPURun{}, err
	}
	time.Sleep(2 * time.Second)
	pid := e.natsProc.Pid()
	idle0, t0 := procCPU(pid), time.Now()
	time.Sleep(3 * time.Second)
	idle := float64(procCPU(pid)-idle0) / float64(time.Since(t0)) // CPU seconds per second

	cpu0, start := procCPU(pid), time.Now()
	var failed atomic.Int64
	openLoop(rate, n, func(i int, _ time.Time) {
		req, _ := http.NewRequestWithContext(ctx, "DELETE", e.api+"/v1/sessions/"+f.sessions[i], nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := e.client.Do(req)
		if err != nil {
			failed.Add(1)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			failed.Add(1)
		}
	})
	if _, err := e.waitApplied(ctx, prefix, len(gws), seq0+uint64(int64(n)-failed.Load())); err != nil {
		return hubCPURun{}, err
	}
	cpu, elapsed := procCPU(pid)-cpu0, time.Since(start)
	us := float64(cpu.Microseconds())
	return hubCPURun{Topology: topo, Gateways: len(gws), IdleMsPerSec: round(idle * 1000), Seconds: round(elapsed.Seconds()), Failed: failed.Load(),
		UsPerRev: round(us / float64(n)), NetUsPerRev: round((us - idle*float64(elapsed.Microseconds())) / float64(n))}, nil
}

// waitApplied waits until sessiond's fleet (GET /v1/gateways) holds n
// gateways whose names start with prefix, each current and at or past seq (0: at
// the stream's last sequence as it saw it), and returns the highest
// sequence they applied.
func (e *benchEnv) waitApplied(ctx context.Context, prefix string, n int, seq uint64) (uint64, error) {
	var seen, behind int
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var body struct {
			Gateways []struct {
				Name          string `json:"name"`
				State         string `json:"state"`
				AppliedSeq    uint64 `json:"applied_seq"`
				StreamLastSeq uint64 `json:"stream_last_seq"`
			} `json:"gateways"`
		}
		if code, err := e.call(ctx, "GET", "/v1/gateways", e.admin, nil, &body); err != nil || code != 200 {
			continue
		}
		seen, behind = 0, 0
		var top uint64
		for _, g := range body.Gateways {
			if !strings.HasPrefix(g.Name, prefix) || g.State != events.GatewayCurrent {
				continue
			}
			seen++
			if want := max(seq, g.StreamLastSeq); g.AppliedSeq < want {
				behind++
			}
			top = max(top, g.AppliedSeq)
		}
		if seen == n && behind == 0 {
			return top, nil
		}
	}
	return 0, fmt.Errorf("%d of %d gateways %s* current, %d of them behind sequence %d", seen, n, prefix, behind, seq)
}
