package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// leafHopResult is the leafhop scenario's: gateways behind leaf nodes
// beside as many on the hub, the same revocations measured at both.
type leafHopResult struct {
	Leaves         int              `json:"leaves"`
	LeafGateways   int              `json:"leaf_gateways"`
	DirectGateways int              `json:"direct_gateways"`
	Runs           []leafHopRun     `json:"runs"`
	Summary        []leafHopSummary `json:"summary"`
}

type leafHopRun struct {
	Rate        int `json:"rate_per_sec"`
	Round       int `json:"round"`
	Revocations int `json:"revocations"`
	// Scheduled instant → applied (the gateway's own report), for every
	// revocation at every gateway of each kind.
	Direct stats `json:"direct_applied"`
	Leaf   stats `json:"leaf_applied"`
	// Paired: for each revocation, the median of its leaf gateways' applies
	// minus the median of its direct gateways'.
	Paired   stats `json:"paired_hop"`
	Problems int   `json:"problems"`
}

type leafHopSummary struct {
	Rate      int     `json:"rate_per_sec"`
	DirectP50 float64 `json:"direct_p50_ms"`
	DirectP99 float64 `json:"direct_p99_ms"`
	LeafP50   float64 `json:"leaf_p50_ms"`
	LeafP99   float64 `json:"leaf_p99_ms"`
	// HopP50 and HopP99: leaf minus direct (the goal: at most 0.5 and 1 ms).
	HopP50    float64 `json:"hop_p50_ms"`
	HopP99    float64 `json:"hop_p99_ms"`
	PairedP50 float64 `json:"paired_hop_p50_ms"`
	Problems  int     `json:"problems"`
}

const directPrefix = "gatewayd-direct-"

// leafHop measures what the leaf hop adds to propagation: with -topology
// pop, as many gateways as the run has behind its leaf nodes start on the
// hub, and open-loop revocations (Prefer: wait=5, so that every gateway
// reports each at once) are timed from their scheduled instant to each
// gateway's own apply, behind a leaf and direct, in the same run: the same
// revocations, the same machine, the same moment.
func leafHop(ctx context.Context, e *benchEnv, o options, res *results) error {
	if len(e.leaves) == 0 {
		return errors.New("leafhop compares gateways behind leaf nodes with direct ones: run it with -topology pop")
	}
	var direct []*gateway
	defer func() {
		for _, g := range direct {
			g.proc.Stop()
		}
	}()
	for i := range e.gateways {
		g, err := e.startGateway(ctx, fmt.Sprintf("%s%d", directPrefix, i))
		if err != nil {
			return err
		}
		direct = append(direct, g)
	}
	var controls []string
	for _, g := range append(append([]*gateway(nil), e.gateways...), direct...) {
		controls = append(controls, g.control)
	}
	res.LeafHop = leafHopResult{Leaves: len(e.leaves), LeafGateways: len(e.gateways), DirectGateways: len(direct)}
	for _, rate := range o.rates {
		n := int(float64(rate) * o.duration.Seconds())
		for round := 1; round <= o.rounds; round++ {
			sr, err := runSessiond(ctx, e, controls, rate, n, "")
			if err != nil {
				return fmt.Errorf("at %d/s, round %d: %w", rate, round, err)
			}
			run := hopRun(sr, rate)
			run.Round = round
			res.LeafHop.Runs = append(res.LeafHop.Runs, run)
			fmt.Fprintf(e.log, "  %d/s round %d: direct p50 %.2f p99 %.2f ms; behind a leaf p50 %.2f p99 %.2f ms; paired hop p50 %.2f ms; problems %d\n",
				rate, round, run.Direct.P50, run.Direct.P99, run.Leaf.P50, run.Leaf.P99, run.Paired.P50, run.Problems)
		}
		res.LeafHop.Summary = append(res.LeafHop.Summary, summariseHop(res.LeafHop.Runs, rate))
	}
	return nil
}

// hopRun splits a run's ground truth by where the gateway sits.
func hopRun(sr sessiondRun, rate int) leafHopRun {
	r := collect("sessiond", rate, sr.at, sr.truth)
	run := leafHopRun{Rate: rate, Revocations: len(sr.at), Problems: r.Failed + r.NotEnforced + r.StillAccepts + (r.Scheduled - r.Sent)}
	var direct, leaf, paired []float64
	for _, a := range sr.at {
		if !a.ok {
			continue
		}
		by, ok := sr.truth.appliedByName(a.key)
		if !ok {
			continue // counted by collect
		}
		var d, l []float64
		for name, at := range by {
			v := ms(at.Sub(a.target))
			if strings.HasPrefix(name, directPrefix) {
				d = append(d, v)
			} else {
				l = append(l, v)
			}
		}
		direct, leaf = append(direct, d...), append(leaf, l...)
		if len(d) > 0 && len(l) > 0 {
			paired = append(paired, median(l)-median(d))
		}
	}
	run.Direct, run.Leaf, run.Paired = summarise(direct), summarise(leaf), summarise(paired)
	return run
}

func summariseHop(runs []leafHopRun, rate int) leafHopSummary {
	// The hop of each round (its two paths measured on the same
	// revocations), then the median over the rounds.
	var d50, d99, l50, l99, h50, h99, p50 []float64
	s := leafHopSummary{Rate: rate}
	for _, r := range runs {
		if r.Rate != rate {
			continue
		}
		d50, d99 = append(d50, r.Direct.P50), append(d99, r.Direct.P99)
		l50, l99 = append(l50, r.Leaf.P50), append(l99, r.Leaf.P99)
		h50, h99 = append(h50, r.Leaf.P50-r.Direct.P50), append(h99, r.Leaf.P99-r.Direct.P99)
		p50 = append(p50, r.Paired.P50)
		s.Problems += r.Problems
	}
	s.DirectP50, s.DirectP99, s.LeafP50, s.LeafP99 = median(d50), median(d99), median(l50), median(l99)
	s.HopP50, s.HopP99, s.PairedP50 = round(median(h50)), round(median(h99)), median(p50)
	return s
}
