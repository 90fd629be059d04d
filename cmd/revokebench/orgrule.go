package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/internal/edgeprobe"
	"github.com/sessionguard/revoke/internal/tokens"
)

// orgRuleResult is the org-rule scenario: one POST /v1/revocations per run
// over an org of -org-sessions sessions, enforced as one rule.
type orgRuleResult struct {
	Filter   string `json:"filter"`
	Sessions int    `json:"sessions_per_org"`
	Runs     int    `json:"runs"`
	// Call: the revoke call's latency.
	Call stats `json:"call"`
	// Refused: the call's start → the sampled tokens refused at every
	// gateway (the slowest gateway).
	Refused stats `json:"refused_everywhere"`
	// Marked: the call's start → the last covered row marked revoked.
	Marked stats `json:"rows_marked"`
	// Enforced: the call's start → its receipt enforced (every gateway
	// reported a watermark past its last event), for a filter revoked
	// session by session, whose call waits for it (Prefer: wait=10).
	Enforced stats `json:"enforced,omitzero"`
	// CPU is the CPU seconds each command spent from the call's start to
	// the last row marked, averaged over the runs: where the time went.
	CPU map[string]float64 `json:"cpu_seconds_per_run"`
	// Wall is that span's length, averaged over the runs, in seconds.
	Wall float64 `json:"wall_seconds_per_run"`
}

// orgRule revokes, -rule-runs times, every session of an org of
// -org-sessions sessions with one rule, and measures the call, the time
// until a sample of the org's tokens is refused at every gateway, and the
// time until every row is marked.
func orgRule(ctx context.Context, e *benchEnv, o options, res *results) error {
	for _, m := range []struct {
		filter string
		runs   int
	}{{"org", o.ruleRuns}, {"device_type", max(1, o.ruleRuns/5)}} {
		if !o.ruleFilters[m.filter] {
			continue
		}
		r, err := orgRuleRuns(ctx, e, o, m.filter, m.runs)
		if err != nil {
			return fmt.Errorf("%s filter: %w", m.filter, err)
		}
		res.OrgRule = append(res.OrgRule, r)
	}
	return nil
}

// orgRuleRuns is runs bulk revocations of new orgs: with filter "org", the
// org alone (one rule); with "device_type", the org's web sessions (every
// one of them, session by session).
func orgRuleRuns(ctx context.Context, e *benchEnv, o options, filter string, runs int) (orgRuleResult, error) {
	var controls []string
	for _, g := range e.gateways {
		controls = append(controls, g.control)
	}
	obs, err := edgeprobe.Dial(controls)
	if err != nil {
		return orgRuleResult{}, err
	}
	defer obs.Close()
	var calls, refused, marked, enforced []float64
	cpu, wall := map[string]float64{}, 0.0
	for run := 0; run < runs; run++ {
		org, sample, err := e.makeOrg(ctx, o.orgSessions, 20)
		if err != nil {
			return orgRuleResult{}, err
		}
		for _, tok := range append(sample, sample...) { // the second use caches it, as in use
			if n, err := obs.Once(tok); err != nil || n != len(controls) {
				return orgRuleResult{}, fmt.Errorf("a fresh token: %d of %d gateways accept it (%v)", n, len(controls), err)
			}
		}
		time.Sleep(200 * time.Millisecond)
		body := map[string]any{"org_id": org, "reason_text": "revokebench"}
		if filter == "device_type" {
			body["device_type"] = "web"
		}
		b, _ := json.Marshal(body)
		// The call and the observer run side by side: the edge may refuse
		// before the call has answered.
		type answer struct {
			d          time.Duration
			code, n    int
			status     string
			enforcedAt time.Time
			err        error
		}
		answered := make(chan answer, 1)
		profile := ""
		if o.profile != "" && run == 0 {
			profile = o.profile + "." + filter
		}
		wait := e.profile(ctx, 10*time.Second, profile)
		cpu0 := cpuByCommand()
		start := time.Now()
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.api+"/v1/revocations", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+e.admin)
			req.Header.Set("Content-Type", "application/json")
			if filter != "org" {
				// Session by session: the answer comes once every gateway
				// has applied the last batch.
				req.Header.Set("Prefer", "wait=10")
			}
			resp, err := e.client.Do(req)
			if err != nil {
				answered <- answer{err: err}
				return
			}
			d := time.Since(start)
			var body struct {
				RevocationID    string `json:"revocation_id"`
				RevokedSessions int    `json:"revoked_sessions"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			a := answer{d: d, code: resp.StatusCode, n: body.RevokedSessions, status: resp.Header.Get("Revocation-Status")}
			if filter != "org" && resp.StatusCode == http.StatusCreated {
				a.enforcedAt, a.err = e.receiptEnforcedAt(ctx, body.RevocationID)
			}
			answered <- a
		}()
		got, err := obs.UntilRefused(start, sample[0], time.Minute)
		if err != nil {
			return orgRuleResult{}, err
		}
		a := <-answered
		if a.err != nil {
			return orgRuleResult{}, a.err
		}
		if err := wait(); err != nil {
			return orgRuleResult{}, err
		}
		call := a.d
		if a.code != http.StatusCreated || a.n != o.orgSessions {
			return orgRuleResult{}, fmt.Errorf("bulk revoke: %d, %d of %d sessions", a.code, a.n, o.orgSessions)
		}
		if filter != "org" {
			enforced = append(enforced, ms(a.enforcedAt.Sub(start)))
		}
		// Every sampled token, at every gateway: the slowest refusal.
		slowest := time.Duration(0)
		for i, tok := range sample {
			if i > 0 {
				if got, err = obs.UntilRefused(start, tok, time.Minute); err != nil {
					return orgRuleResult{}, err
				}
			}
			for _, d := range got {
				slowest = max(slowest, d)
			}
		}
		for {
			var left int
			if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE org_id = $1 AND revoked_at IS NULL`, org).Scan(&left); err != nil {
				return orgRuleResult{}, err
			}
			if left == 0 {
				break
			}
			if time.Since(start) > time.Minute {
				return orgRuleResult{}, fmt.Errorf("%d rows still unmarked after a minute", left)
			}
			time.Sleep(20 * time.Millisecond)
		}
		calls, refused, marked = append(calls, ms(call)), append(refused, ms(slowest)), append(marked, ms(time.Since(start)))
		wall += time.Since(start).Seconds() / float64(runs)
		used := cpuSince(cpu0)
		for cmd, sec := range used {
			cpu[cmd] += round(sec / float64(runs))
		}
		fmt.Fprintf(e.log, "  %s run %d: call %.1f ms, refused everywhere %.2f ms, rows marked %.0f ms", filter, run+1, ms(call), ms(slowest), ms(time.Since(start)))
		if filter != "org" {
			fmt.Fprintf(e.log, ", receipt enforced %.0f ms", enforced[len(enforced)-1])
		}
		fmt.Fprintf(e.log, "; CPU s %v\n", used)
	}
	res := orgRuleResult{Filter: filter, Sessions: o.orgSessions, Runs: runs, Call: summarise(calls), Refused: summarise(refused), Marked: summarise(marked),
		CPU: cpu, Wall: round(wall)}
	if len(enforced) > 0 {
		res.Enforced = summarise(enforced)
	}
	return res, nil
}

// receiptEnforcedAt reads when receipt id was enforced, as sessiond
// recorded it (the wall clock of the same machine), asking again until it
// is (the call's wait may have ended first), for at most two minutes.
func (e *benchEnv) receiptEnforcedAt(ctx context.Context, id string) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.api+"/v1/revocations/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := e.client.Do(req)
		if err != nil {
			return time.Time{}, err
		}
		var rc struct {
			Status     string     `json:"status"`
			EnforcedAt *time.Time `json:"enforced_at"`
		}
		err = json.NewDecoder(resp.Body).Decode(&rc)
		resp.Body.Close()
		switch {
		case err != nil || resp.StatusCode != http.StatusOK:
			return time.Time{}, fmt.Errorf("receipt %s: %d (%v)", id, resp.StatusCode, err)
		case rc.EnforcedAt != nil:
			return *rc.EnforcedAt, nil
		case time.Now().After(deadline):
			return time.Time{}, fmt.Errorf("receipt %s still %s after two minutes", id, rc.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// makeOrg creates an org of n sessions (100 users) signed in a minute ago,
// directly in PostgreSQL, and signs access tokens for sample of them.
func (e *benchEnv) makeOrg(ctx context.Context, n, sample int) (string, []string, error) {
	org := uuid.NewString()
	if _, err := e.pool.Exec(ctx, "INSERT INTO orgs (id, name) VALUES ($1, $2)", org, "rule-"+org[:8]); err != nil {
		return "", nil, err
	}
	users := 100
	if _, err := e.pool.Exec(ctx, `INSERT INTO users (id, org_id, email, role)
		SELECT gen_random_uuid(), $1, 'rule-' || gen_random_uuid()::text || '@example.com', 'user' FROM generate_series(1, $2)`, org, users); err != nil {
		return "", nil, err
	}
	rows, err := e.pool.Query(ctx, `INSERT INTO sessions (id, user_id, org_id, device_type, user_agent, ip, created_at, last_active_at, expires_at)
		SELECT gen_random_uuid(), u.id, $1, 'web', 'revokebench', '127.0.0.1', now() - interval '1 minute', now(), now() + interval '30 days'
		FROM users u, generate_series(1, $2) WHERE u.org_id = $1
		RETURNING id, user_id, created_at`, org, n/users)
	if err != nil {
		return "", nil, err
	}
	defer rows.Close()
	ks := e.keys.Current()
	signer := tokens.Signer{Issuer: issuer, Audience: "api"}
	var toks []string
	for rows.Next() {
		var sid, uid string
		var created time.Time
		if err := rows.Scan(&sid, &uid, &created); err != nil {
			return "", nil, err
		}
		if len(toks) == sample {
			continue
		}
		tok, _, err := signer.Sign(ks, tokens.Grant{Subject: uid, SessionID: sid, Org: org, Role: "user", Now: time.Now(), AuthTime: created,
			TTL: 5 * time.Minute, ID: uuid.NewString()})
		if err != nil {
			return "", nil, err
		}
		toks = append(toks, tok)
	}
	return org, toks, rows.Err()
}
