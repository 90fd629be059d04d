package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// partitionResult is the partition scenario's: a point of presence cut
// off from the hub and healed, round after round.
type partitionResult struct {
	MaxStalenessSec float64        `json:"max_staleness_sec"`
	Runs            []partitionRun `json:"runs"`
	// Medians and maxima over the rounds, in ms.
	FailClosedMs    float64 `json:"fail_closed_ms_median"`
	FailClosedMaxMs float64 `json:"fail_closed_ms_max"`
	EnforcedMs      float64 `json:"enforced_after_heal_ms_median"`
	EnforcedMaxMs   float64 `json:"enforced_after_heal_ms_max"`
	ServingMs       float64 `json:"serving_after_heal_ms_median"`
	ServingMaxMs    float64 `json:"serving_after_heal_ms_max"`
	Violations      int     `json:"violations"`
}

type partitionRun struct {
	Round int `json:"round"`
	// The cut → the gateway refuses (503) a valid token.
	FailClosedMs float64 `json:"fail_closed_ms"`
	// The heal → the session revoked at the hub during the cut is refused
	// (401), and → a valid token is served (200) again.
	EnforcedMs float64 `json:"enforced_after_heal_ms"`
	ServingMs  float64 `json:"serving_after_heal_ms"`
	// Violations: the revoked session's token accepted after the heal, or
	// any answer but 200, 401 and 503.
	Violations int `json:"violations"`
}

const partitionPoll = 2 * time.Millisecond

// partition cuts a point of presence off from the hub: a leaf node of its
// own behind a relay process (the WAN), and a gateway on it with
// GATEWAY_MAX_STALENESS of -partition-staleness. Each round: the gateway
// serves; the link is cut; how long until it refuses a valid token (fail
// closed, at most its bound after the cut); a session is revoked at the hub
// meanwhile; the link heals; how long until that revocation is refused and
// a valid token served again (the goal: within 1 s). From the heal on, the
// revoked token must never be accepted. The gateway is asked every 2 ms.
func partition(ctx context.Context, e *benchEnv, o options, res *results) error {
	wan, err := e.startRelay(ctx, "relay-partition", strings.TrimPrefix(e.leafURL, "nats-leaf://"))
	if err != nil {
		return err
	}
	defer wan.proc.Stop()
	leaf, err := e.startLeaf(ctx, "nats-partition", filepath.Join(e.dir, "nats-partition"), "nats-leaf://"+wan.addr)
	if err != nil {
		return err
	}
	defer leaf.proc.Stop()
	g, err := e.startGateway(ctx, "gatewayd-partition", append(leaf.gatewayEnv(), "GATEWAY_MAX_STALENESS="+o.partitionStaleness.String())...)
	if err != nil {
		return err
	}
	defer g.proc.Stop()
	res.Partition = partitionResult{MaxStalenessSec: o.partitionStaleness.Seconds()}
	var closed, enforced, serving []float64
	for round := 1; round <= o.rounds; round++ {
		run, err := e.partitionRound(ctx, g, wan, o.partitionStaleness)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		run.Round = round
		res.Partition.Runs = append(res.Partition.Runs, run)
		res.Partition.Violations += run.Violations
		closed, enforced, serving = append(closed, run.FailClosedMs), append(enforced, run.EnforcedMs), append(serving, run.ServingMs)
		fmt.Fprintf(e.log, "  round %d: failed closed %.0f ms after the cut (bound %s); after the heal, the revocation refused in %.0f ms, serving again in %.0f ms; %d violations\n",
			round, run.FailClosedMs, o.partitionStaleness, run.EnforcedMs, run.ServingMs, run.Violations)
	}
	p := &res.Partition
	p.FailClosedMs, p.EnforcedMs, p.ServingMs = median(closed), median(enforced), median(serving)
	p.FailClosedMaxMs, p.EnforcedMaxMs, p.ServingMaxMs = slices.Max(closed), slices.Max(enforced), slices.Max(serving)
	if p.Violations > 0 {
		return fmt.Errorf("%d violations: a token revoked during the partition was accepted after the heal, or an answer was neither 200, 401 nor 503", p.Violations)
	}
	return nil
}

func (e *benchEnv) partitionRound(ctx context.Context, g *gateway, wan *relay, bound time.Duration) (partitionRun, error) {
	var run partitionRun
	f, err := e.makeSessions(ctx, 1, 2)
	if err != nil {
		return run, err
	}
	valid, victim := f.tokens[0], f.tokens[1]
	ask := func(token string) int {
		code, err := e.check(ctx, g, token)
		if err != nil {
			return 0
		}
		return code
	}
	// Serving, and current.
	deadline := time.Now().Add(30 * time.Second)
	for ask(valid) != http.StatusOK || ask(victim) != http.StatusOK {
		if time.Now().After(deadline) {
			return run, fmt.Errorf("the gateway in the PoP never served")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := wan.cut(); err != nil {
		return run, err
	}
	cut := time.Now()
	for {
		code := ask(valid)
		if code == http.StatusServiceUnavailable {
			run.FailClosedMs = round(ms(time.Since(cut)))
			break
		}
		if code != http.StatusOK {
			run.Violations++
		}
		if time.Since(cut) > bound+10*time.Second {
			return run, fmt.Errorf("still serving %s after the cut (bound %s)", time.Since(cut), bound)
		}
		time.Sleep(partitionPoll)
	}
	// Revoked at the hub during the partition; give the outbox time to
	// publish it there.
	if code, err := e.call(ctx, "DELETE", "/v1/sessions/"+f.sessions[1], e.admin, nil, nil); err != nil || code != http.StatusNoContent {
		return run, fmt.Errorf("revoke during the partition: %d %v", code, err)
	}
	time.Sleep(500 * time.Millisecond)

	if err := wan.heal(); err != nil {
		return run, err
	}
	healed := time.Now()
	for run.EnforcedMs == 0 || run.ServingMs == 0 {
		switch ask(victim) {
		case http.StatusUnauthorized:
			if run.EnforcedMs == 0 {
				run.EnforcedMs = round(ms(time.Since(healed)))
			}
		case http.StatusServiceUnavailable:
		default: // accepted after the heal, or a wrong answer
			run.Violations++
		}
		switch ask(valid) {
		case http.StatusOK:
			if run.ServingMs == 0 {
				run.ServingMs = round(ms(time.Since(healed)))
			}
		case http.StatusServiceUnavailable:
		default:
			run.Violations++
		}
		if time.Since(healed) > 30*time.Second {
			return run, fmt.Errorf("not recovered %s after the heal", time.Since(healed))
		}
		time.Sleep(partitionPoll)
	}
	return run, nil
}
