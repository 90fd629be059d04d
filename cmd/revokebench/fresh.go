package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/internal/tokens"
)

// freshResult is the fresh scenario's: /v1/check when every token is new.
type freshResult struct {
	Concurrency int         `json:"concurrency"`
	Runs        []rpsResult `json:"runs"`
	// VsEd25519 is the gateway against a bare handler that verifies one
	// Ed25519 signature per request; VsBare against a bare 200 handler.
	VsEd25519      float64 `json:"check_vs_bare_ed25519"`
	VsBare         float64 `json:"check_vs_bare_200"`
	GatewayCPUUsPR float64 `json:"gatewayd_cpu_us_per_request"`
}

// freshScenario measures /v1/check with a token the gateway has never seen
// in every request (the first request of each fresh session), beside a
// bare 200 handler and a bare handler that does one Ed25519 verify of the
// token per request and nothing else, in alternating rounds.
func freshScenario(ctx context.Context, e *benchEnv, o options, res *results) error {
	g := e.gateways[0]
	// Enough tokens that no gateway request sees one twice: signed here,
	// with sessiond's key (the gateway checks no session).
	const n = 400_000
	toks := make([]string, n)
	ks := e.keys.Current()
	signer := tokens.Signer{Issuer: issuer, Audience: "api"}
	now := time.Now()
	org := uuid.NewString()
	for i := range toks {
		tok, _, err := signer.Sign(ks, tokens.Grant{Subject: uuid.NewString(), SessionID: uuid.NewString(), Org: org, Role: "user", Now: now, TTL: 10 * time.Minute, ID: uuid.NewString()})
		if err != nil {
			return err
		}
		toks[i] = "Bearer " + tok
	}
	bare, bareURL, err := e.startBare(ctx, "ok", "")
	if err != nil {
		return err
	}
	defer bare.Stop()
	ed, edURL, err := e.startBare(ctx, "ed25519", "", "-jwks", e.api+"/.well-known/jwks.json")
	if err != nil {
		return err
	}
	defer ed.Stop()
	var used atomic.Int64 // tokens the gateway has been sent
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 4096}}
	runs := []struct {
		name, url string
		fresh     bool
	}{{"bare 200 handler", bareURL + "/v1/check", false}, {"bare Ed25519 verify", edURL + "/v1/check", false}, {"gatewayd /v1/check, every token new", g.control + "/v1/check", true}}
	got := map[string][]float64{}
	per := o.duration / 3
	var gwCPU, gwReqs float64
	for round := 0; round < 3; round++ {
		for _, r := range runs {
			mk := func(i int) *http.Request {
				k := i % n
				if r.fresh {
					k = int(used.Add(1) - 1)
					if k >= n {
						k = n - 1 // counted as a wrong answer below: the run was longer than the tokens
					}
				}
				req, _ := http.NewRequest("GET", r.url, nil)
				req.Header.Set("Authorization", toks[k])
				return req
			}
			var profiled chan error
			if r.fresh && round == 0 && o.profile != "" {
				profiled = make(chan error, 1)
				go func() { profiled <- fetchProfile(ctx, g.debug, per, o.profile+".fresh") }()
			}
			cpu0 := cpuByCommand()
			start := time.Now()
			rps, bad := hammer(ctx, client, o.concurrency, per, mk, func(_, s int) bool { return s == 200 })
			if bad > 0 {
				return fmt.Errorf("%s: %d wrong answers", r.name, bad)
			}
			if profiled != nil {
				if err := <-profiled; err != nil {
					return fmt.Errorf("gatewayd profile: %w", err)
				}
				fmt.Fprintf(e.log, "  gatewayd's CPU profile: %s.fresh (go tool pprof -top %s.fresh)\n", o.profile, o.profile)
			}
			if r.fresh {
				gwCPU += cpuSince(cpu0)["gatewayd"]
				gwReqs += rps * time.Since(start).Seconds()
			}
			got[r.name] = append(got[r.name], rps)
		}
	}
	if used.Load() > n {
		return fmt.Errorf("the gateway runs needed %d tokens, more than the %d signed: shorten -duration", used.Load(), n)
	}
	med := func(name string) float64 { return round(median(got[name])) }
	res.Fresh = freshResult{Concurrency: o.concurrency, GatewayCPUUsPR: round(gwCPU / gwReqs * 1e6)}
	for _, r := range runs {
		res.Fresh.Runs = append(res.Fresh.Runs, rpsResult{Name: r.name, ReqPerSec: med(r.name), Rounds: got[r.name]})
	}
	gw := med("gatewayd /v1/check, every token new")
	res.Fresh.VsEd25519, res.Fresh.VsBare = round(gw/med("bare Ed25519 verify")), round(gw/med("bare 200 handler"))
	fmt.Fprintf(e.log, "  fresh tokens: gatewayd %.0f/s, bare Ed25519 %.0f/s (%.2f ×), bare 200 %.0f/s (%.2f ×), gatewayd %.1f µs CPU a request\n",
		gw, med("bare Ed25519 verify"), res.Fresh.VsEd25519, med("bare 200 handler"), res.Fresh.VsBare, res.Fresh.GatewayCPUUsPR)
	return nil
}
