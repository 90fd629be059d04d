package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionguard/revoke/internal/proc"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/barepath"
	"github.com/sessionguard/revoke/internal/edgeprobe"
)

// propagation measures revocation receipts against the bare mechanism, at
// each rate, in alternating rounds, open-loop: revocation i is sent at
// start + i/rate whether or not the ones before it have been answered, and
// every latency is measured from that scheduled instant, so a late send or a
// slow answer counts against the system, never hides from it. Every
// revocation is measured, three ways:
//
//   - the answer: sessiond's revoke call with Prefer: wait=5 returns once
//     its receipt is enforced at every gateway (Revocation-Status);
//   - the ground truth: the gateways' own reports of when they applied it
//     (watermark reports read by the tool, the sequence read from the stream
//     by an ordered consumer of its own);
//   - the observer: once the answer says enforced (for the floor: once every
//     bare gateway reported it), every gateway is asked about the token, and
//     each must refuse it; a receipt that says enforced while a gateway
//     still accepts is a failure of the run.
//
// The floor is the bare mechanism of barepath.go at the same rate: a durable
// commit, one publish, the gateways' apply and report, timed by the same
// ground truth.
func propagation(ctx context.Context, e *benchEnv, o options, res *results) error {
	if err := bareSchema(ctx, e); err != nil {
		return err
	}
	floor, err := e.startBarePath(ctx, len(e.gateways))
	if err != nil {
		return err
	}
	defer floor.close()
	var real []string
	for _, g := range e.gateways {
		real = append(real, g.control)
	}
	res.Propagation = propagationResult{Gateways: len(e.gateways), Rounds: o.rounds, DurationSec: o.duration.Seconds()}
	for _, rate := range o.rates {
		n := int(float64(rate) * o.duration.Seconds())
		for round := 1; round <= o.rounds; round++ {
			fr, err := openLoopFloor(ctx, e, floor, rate, n)
			if err != nil {
				return fmt.Errorf("floor at %d/s, round %d: %w", rate, round, err)
			}
			fr.Round = round
			res.Propagation.Runs = append(res.Propagation.Runs, fr)
			profile := ""
			if o.profile != "" && round == 1 && rate == o.rates[len(o.rates)-1] {
				profile = o.profile + ".propagation"
			}
			sr, err := openLoopSessiond(ctx, e, real, rate, n, profile)
			if err != nil {
				return fmt.Errorf("sessiond at %d/s, round %d: %w", rate, round, err)
			}
			sr.Round = round
			res.Propagation.Runs = append(res.Propagation.Runs, sr)
			fmt.Fprintf(e.log, "  %d/s round %d: floor enforced p50 %.2f p99 %.2f ms; receipts enforced p50 %.2f p99 %.2f ms (truth p50 %.2f), slack p99 %.2f ms\n",
				rate, round, fr.Truth.P50, fr.Truth.P99, sr.Answer.P50, sr.Answer.P99, sr.Truth.P50, sr.Slack.P99)
		}
		res.Propagation.Summary = append(res.Propagation.Summary, summariseRate(res.Propagation.Runs, rate))
	}
	for _, r := range res.Propagation.Runs {
		if r.Path == "sessiond" && r.Rate == o.rates[len(o.rates)-1] {
			res.Propagation.SamplesMs = append(res.Propagation.SamplesMs, r.answers...)
		}
	}
	return nil
}

// barePath is the floor's processes.
type barePath struct {
	api      string
	controls []string
	procs    []*proc.Proc
}

func (b *barePath) close() {
	for _, p := range b.procs {
		p.Stop()
	}
}

func (e *benchEnv) startBarePath(ctx context.Context, gateways int) (*barePath, error) {
	b := &barePath{}
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := e.spawn(ctx, "bare-api", nil, "bare", "-mode", "api", "-addr", addr, "-database", e.pg.URL("revoke"), "-nats", e.natsURL)
	if err != nil {
		return nil, err
	}
	b.procs, b.api = append(b.procs, p), "http://"+addr
	if err := e.waitOK(ctx, b.api+"/healthz", p); err != nil {
		b.close()
		return nil, err
	}
	for i := range gateways {
		addr, err := proc.FreeAddr()
		if err != nil {
			b.close()
			return nil, err
		}
		name := fmt.Sprintf("bare-gateway-%d", i)
		p, err := e.spawn(ctx, name, nil, "bare", "-mode", "gateway", "-addr", addr, "-nats", e.natsURL, "-name", name)
		if err != nil {
			b.close()
			return nil, err
		}
		b.procs, b.controls = append(b.procs, p), append(b.controls, "http://"+addr)
		if err := e.waitOK(ctx, "http://"+addr+"/healthz", p); err != nil {
			b.close()
			return nil, err
		}
	}
	return b, nil
}

// attempt is one revocation of a run.
type attempt struct {
	key, token string
	target     time.Time // its scheduled instant
	sent       time.Time
	answered   time.Time
	status     string // Revocation-Status (sessiond)
	ok         bool   // the call succeeded (and, for sessiond, said enforced)
	accepted   int    // gateways that still accepted the token once it was said enforced
}

// openLoop calls fire(i) for i in [0, n) at start + i/rate, each in a
// goroutine of its own, and waits for them all. A send never waits for an
// answer, and none is dropped: a late one is sent late and measured from
// its scheduled instant.
func openLoop(rate, n int, fire func(i int, target time.Time)) {
	start := time.Now().Add(50 * time.Millisecond)
	period := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	for i := range n {
		target := start.Add(time.Duration(i) * period)
		edgeprobe.SleepUntil(target)
		wg.Add(1)
		go func() { defer wg.Done(); fire(i, target) }()
	}
	wg.Wait()
}

// observers is a pool of edgeprobe observers of the same gateways; the
// confirmations of revocations in flight at once each take one.
type observers chan *edgeprobe.Observer

func dialObservers(controls []string, n int) (observers, error) {
	pool := make(observers, n)
	for range n {
		o, err := edgeprobe.Dial(controls)
		if err != nil {
			pool.close()
			return nil, err
		}
		pool <- o
	}
	return pool, nil
}

func (p observers) close() {
	for {
		select {
		case o := <-p:
			o.Close()
		default:
			return
		}
	}
}

// confirm asks every gateway about token once and returns how many accepted.
func (p observers) confirm(token string) int {
	o := <-p
	defer func() { p <- o }()
	n, err := o.Once(token)
	if err != nil {
		return -1
	}
	return n
}

func openLoopFloor(ctx context.Context, e *benchEnv, b *barePath, rate, n int) (runResult, error) {
	t, err := watch(ctx, e.natsURL, barepath.Stream, barepath.Applied, bareKey, len(b.controls))
	if err != nil {
		return runResult{}, err
	}
	defer t.close()
	obs, err := dialObservers(b.controls, 16)
	if err != nil {
		return runResult{}, err
	}
	defer obs.close()
	at := make([]attempt, n)
	for i := range at {
		at[i].key = uuid.NewString()
		at[i].token = at[i].key
	}
	busy0 := machineBusy()
	openLoop(rate, n, func(i int, target time.Time) {
		a := &at[i]
		a.target, a.sent = target, time.Now()
		req, _ := http.NewRequestWithContext(ctx, "DELETE", b.api+"/bare/"+a.key, nil)
		resp, err := e.client.Do(req)
		a.answered = time.Now()
		if err != nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return
		}
		select {
		case <-t.applied(a.key):
			a.ok = true
			a.accepted = obs.confirm(a.token)
		case <-time.After(10 * time.Second):
		}
	})
	busy := machineBusy().since(busy0)
	r := collect("floor", rate, at, t)
	r.MachineBusy = busy
	return r, nil
}

// openLoopSessiond runs sessiond's path; with profile set, sessiond's CPU
// profile of the run is written there.
func openLoopSessiond(ctx context.Context, e *benchEnv, controls []string, rate, n int, profile string) (runResult, error) {
	sr, err := runSessiond(ctx, e, controls, rate, n, profile)
	if err != nil {
		return runResult{}, err
	}
	r := collect("sessiond", rate, sr.at, sr.truth)
	r.SessiondCPUPerRevocationMs = round(ms(sr.cpu) / float64(n))
	r.MachineBusy = sr.busy
	return r, nil
}

// sessiondRun is what an open-loop run of sessiond's path recorded: every
// revocation, the ground truth (closed, still readable), sessiond's CPU
// and the machine's busy share.
type sessiondRun struct {
	at    []attempt
	truth *truth
	cpu   time.Duration
	busy  float64
}

// runSessiond revokes n sessions at rate, each with Prefer: wait=5, and
// asks every gateway of controls about each one its answer says enforced.
func runSessiond(ctx context.Context, e *benchEnv, controls []string, rate, n int, profile string) (sessiondRun, error) {
	f, err := e.makeSessions(ctx, n/10+1, 10)
	if err != nil {
		return sessiondRun{}, err
	}
	if err := e.warm(ctx, f.tokens[:n]); err != nil {
		return sessiondRun{}, err
	}
	// The warm-up makes every gateway report the sessions as active within
	// the next second; let sessiond record that first, so the run meets the
	// activity of a steady system, not that burst.
	time.Sleep(2500 * time.Millisecond)
	t, err := watch(ctx, e.natsURL, events.StreamRevocations, events.SubjectGatewayApplied, sessionKey, len(controls))
	if err != nil {
		return sessiondRun{}, err
	}
	defer t.close()
	obs, err := dialObservers(controls, 16)
	if err != nil {
		return sessiondRun{}, err
	}
	defer obs.close()
	at := make([]attempt, n)
	for i := range at {
		at[i].key, at[i].token = f.sessions[i], f.tokens[i]
	}
	wait := e.profile(ctx, time.Duration(n/rate)*time.Second, profile)
	cpu0, busy0 := procCPU(e.sessiond.Pid()), machineBusy()
	openLoop(rate, n, func(i int, target time.Time) {
		a := &at[i]
		a.target, a.sent = target, time.Now()
		req, _ := http.NewRequestWithContext(ctx, "DELETE", e.api+"/v1/sessions/"+a.key, nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		req.Header.Set("Prefer", "wait=5")
		resp, err := e.client.Do(req)
		a.answered = time.Now()
		if err != nil {
			return
		}
		resp.Body.Close()
		a.status = resp.Header.Get("Revocation-Status")
		if resp.StatusCode != http.StatusNoContent || a.status != "enforced" {
			return
		}
		a.ok = true
		a.accepted = obs.confirm(a.token)
	})
	cpu, busy := procCPU(e.sessiond.Pid())-cpu0, machineBusy().since(busy0)
	if err := wait(); err != nil {
		return sessiondRun{}, err
	}
	// The last reports may still be on their way.
	time.Sleep(100 * time.Millisecond)
	return sessiondRun{at: at, truth: t, cpu: cpu, busy: busy}, nil
}

// runResult is one run of one path at one rate.
type runResult struct {
	Path      string `json:"path"`
	Rate      int    `json:"rate_per_sec"`
	Round     int    `json:"round"`
	Scheduled int    `json:"scheduled"`
	Sent      int    `json:"sent"`
	// Late is how late each send left after its scheduled instant.
	Late stats `json:"send_lateness"`
	// Answer: scheduled instant → the call's answer (sessiond: the answer
	// that says enforced; the floor: the commit's 204).
	Answer stats `json:"answer"`
	// Truth: scheduled instant → the last gateway's own apply (its report).
	Truth stats `json:"enforced_by_gateway_reports"`
	// Slack: the last gateway's apply → the answer (sessiond only).
	Slack       stats `json:"wait_slack,omitempty"`
	Failed      int   `json:"failed"`
	NotEnforced int   `json:"answered_not_enforced"`
	// NotEnforcedMs: how long each of those took to answer.
	NotEnforcedMs     []float64 `json:"answered_not_enforced_ms,omitempty"`
	NotEnforcedStatus []string  `json:"answered_not_enforced_status,omitempty"`
	StillAccepts      int       `json:"accepted_after_enforced"`
	Reports           int       `json:"gateway_reports"`
	// MachineBusy is the share of the machine's CPU time that was busy
	// during the run (1: every core, all the time).
	MachineBusy float64 `json:"machine_busy"`
	// SessiondCPUPerRevocationMs is sessiond's user+system CPU during the
	// run divided by the revocations (sessiond only).
	SessiondCPUPerRevocationMs float64 `json:"sessiond_cpu_per_revocation_ms,omitempty"`

	answers []float64
}

func collect(path string, rate int, at []attempt, t *truth) runResult {
	r := runResult{Path: path, Rate: rate, Scheduled: len(at), Reports: t.reportCount()}
	var late, answer, truthMs, slack []float64
	for _, a := range at {
		if !a.sent.IsZero() {
			r.Sent++
			late = append(late, ms(a.sent.Sub(a.target)))
		}
		if !a.ok {
			if a.status != "" && a.status != "enforced" {
				r.NotEnforced++
				r.NotEnforcedMs = append(r.NotEnforcedMs, round(ms(a.answered.Sub(a.target))))
				r.NotEnforcedStatus = append(r.NotEnforcedStatus, a.status)
			} else {
				r.Failed++
			}
			continue
		}
		if a.accepted != 0 {
			r.StillAccepts++
		}
		answer = append(answer, ms(a.answered.Sub(a.target)))
		applied, ok := t.appliedAt(a.key)
		if !ok {
			r.Failed++
			continue
		}
		last := applied[0]
		for _, x := range applied {
			if x.After(last) {
				last = x
			}
		}
		truthMs = append(truthMs, ms(last.Sub(a.target)))
		if path == "sessiond" {
			slack = append(slack, ms(a.answered.Sub(last)))
		}
	}
	r.Late, r.Answer, r.Truth, r.Slack = summarise(late), summarise(answer), summarise(truthMs), summarise(slack)
	r.answers = answer
	return r
}

// rateSummary is the medians over a rate's rounds, and the goals' ratios.
type rateSummary struct {
	Rate               int     `json:"rate_per_sec"`
	FloorP50           float64 `json:"floor_enforced_p50_ms"`
	FloorP99           float64 `json:"floor_enforced_p99_ms"`
	ReceiptP50         float64 `json:"receipt_enforced_p50_ms"`
	ReceiptP99         float64 `json:"receipt_enforced_p99_ms"`
	TruthP50           float64 `json:"receipt_truth_p50_ms"`
	TruthP99           float64 `json:"receipt_truth_p99_ms"`
	SlackP99           float64 `json:"wait_slack_p99_ms"`
	RatioP50           float64 `json:"ratio_p50"`
	RatioP99           float64 `json:"ratio_p99"`
	LateP99            float64 `json:"send_lateness_p99_ms"`
	CPUPerRevocationMs float64 `json:"sessiond_cpu_per_revocation_ms"`
	BusyFloor          float64 `json:"machine_busy_floor"`
	BusyReceipts       float64 `json:"machine_busy_receipts"`
	Problems           int     `json:"failed_or_not_enforced_or_still_accepted"`
}

func summariseRate(runs []runResult, rate int) rateSummary {
	med := func(path string, f func(runResult) float64) float64 {
		var v []float64
		for _, r := range runs {
			if r.Rate == rate && r.Path == path {
				v = append(v, f(r))
			}
		}
		if len(v) == 0 {
			return 0
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	s := rateSummary{Rate: rate,
		FloorP50:           med("floor", func(r runResult) float64 { return r.Truth.P50 }),
		FloorP99:           med("floor", func(r runResult) float64 { return r.Truth.P99 }),
		ReceiptP50:         med("sessiond", func(r runResult) float64 { return r.Answer.P50 }),
		ReceiptP99:         med("sessiond", func(r runResult) float64 { return r.Answer.P99 }),
		TruthP50:           med("sessiond", func(r runResult) float64 { return r.Truth.P50 }),
		TruthP99:           med("sessiond", func(r runResult) float64 { return r.Truth.P99 }),
		SlackP99:           med("sessiond", func(r runResult) float64 { return r.Slack.P99 }),
		LateP99:            max(med("sessiond", func(r runResult) float64 { return r.Late.P99 }), med("floor", func(r runResult) float64 { return r.Late.P99 })),
		CPUPerRevocationMs: med("sessiond", func(r runResult) float64 { return r.SessiondCPUPerRevocationMs }),
		BusyFloor:          med("floor", func(r runResult) float64 { return r.MachineBusy }),
		BusyReceipts:       med("sessiond", func(r runResult) float64 { return r.MachineBusy }),
	}
	for _, r := range runs {
		if r.Rate == rate {
			s.Problems += r.Failed + r.NotEnforced + r.StillAccepts + (r.Scheduled - r.Sent)
		}
	}
	if s.FloorP50 > 0 && s.FloorP99 > 0 {
		s.RatioP50, s.RatioP99 = round(s.ReceiptP50/s.FloorP50), round(s.ReceiptP99/s.FloorP99)
	}
	return s
}

// cpuSample is /proc/stat's first line: busy and total jiffies.
type cpuSample struct{ busy, total int64 }

func machineBusy() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var s cpuSample
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		s.total += v
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v
		}
	}
	return s
}

func (s cpuSample) since(t cpuSample) float64 {
	if s.total <= t.total {
		return 0
	}
	return round(float64(s.busy-t.busy) / float64(s.total-t.total))
}
