package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

type results struct {
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	Gateways    int               `json:"gateways"`
	Topology    string            `json:"topology"`
	Leaves      int               `json:"leaves,omitempty"`
	Machine     map[string]string `json:"machine"`
	Propagation propagationResult `json:"propagation"`
	Throughput  throughputResult  `json:"throughput"`
	Revoke      revokeResult      `json:"revoke"`
	OrgWide     orgWideResult     `json:"org_wide"`
	ColdStart   coldStartResult   `json:"cold_start"`
	Fleet       fleetResult       `json:"fleet"`
	OrgRule     []orgRuleResult   `json:"org_rule"`
	SSF         ssfResult         `json:"ssf"`
	Introspect  introspectResult  `json:"introspect"`
	Outage      outageResult      `json:"ssf_outage"`
	Fresh       freshResult       `json:"fresh_tokens"`
	LeafHop     leafHopResult     `json:"leaf_hop"`
	HubCPU      hubCPUResult      `json:"hub_cpu"`
	Partition   partitionResult   `json:"partition"`
}

type propagationResult struct {
	Gateways    int           `json:"gateways"`
	Rounds      int           `json:"rounds"`
	DurationSec float64       `json:"seconds_per_run"`
	Runs        []runResult   `json:"runs"`
	Summary     []rateSummary `json:"summary"`
	// SamplesMs are the receipt answers (scheduled instant → enforced) of
	// the sessiond runs at the highest rate, for the SVG.
	SamplesMs []float64 `json:"-"`
}

// problems counts what went wrong in the propagation runs.
func (p propagationResult) problems() int {
	n := 0
	for _, s := range p.Summary {
		n += s.Problems
	}
	return n
}

type rpsResult struct {
	Name      string    `json:"name"`
	ReqPerSec float64   `json:"req_per_sec_median"`
	Rounds    []float64 `json:"rounds"`
}

type throughputResult struct {
	Concurrency       int         `json:"concurrency"`
	Mix               string      `json:"mix"`
	Rounds            int         `json:"rounds"`
	Runs              []rpsResult `json:"runs"`
	CheckRatio        float64     `json:"check_vs_bare_200"`
	ProxyRatio        float64     `json:"proxy_vs_bare_reverseproxy"`
	NginxVsProxyRatio float64     `json:"nginx_auth_request_vs_gateway_proxy,omitempty"`
	Note              string      `json:"note,omitempty"`
}

type revokeResult struct {
	Concurrency                int     `json:"concurrency"`
	PerSec                     float64 `json:"revocations_per_sec"`
	Latency                    stats   `json:"latency"`
	SessiondCPUPerRevocationMs float64 `json:"sessiond_cpu_per_revocation_ms"`
	SessiondCores              float64 `json:"sessiond_cores"`
}

type orgWideResult struct {
	Sessions   int     `json:"sessions"`
	Users      int     `json:"users"`
	Revoked    int64   `json:"revoked"`
	APIms      float64 `json:"api_ms"`
	EnforcedMs float64 `json:"enforced_everywhere_ms"`
	Sampled    int     `json:"sampled_tokens"`
}

type coldStartResult struct {
	Entries          int     `json:"entries"`
	PublishSeconds   float64 `json:"publish_seconds"`
	ReadySeconds     float64 `json:"ready_seconds"`
	RSSMB            float64 `json:"rss_mb"`
	PeakRSSMB        float64 `json:"peak_rss_mb"`
	BlocklistEntries int     `json:"blocklist_entries"`
	// The same cold start from a snapshot (GATEWAY_SNAPSHOT_INTERVAL),
	// measured after it in the same run.
	SnapshotReadySeconds float64 `json:"snapshot_ready_seconds"`
	SnapshotRSSMB        float64 `json:"snapshot_rss_mb"`
	SnapshotPeakRSSMB    float64 `json:"snapshot_peak_rss_mb"`
	SnapshotEntries      int     `json:"snapshot_blocklist_entries"`
}

func printTable(w io.Writer, r *results) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	where := "on the hub"
	if r.Leaves > 0 {
		where = fmt.Sprintf("behind %d leaf nodes", r.Leaves)
	}
	fmt.Fprintf(tw, "\nrevokebench  %s  %s cpus, %d gateways %s\n", r.Machine["cpu"], r.Machine["cpus"], r.Gateways, where)
	for _, p := range r.Propagation.Summary {
		fmt.Fprintf(tw, "receipts @ %d/s, open loop\tenforced (Prefer: wait=5 answer)\tp50 %.2f ms\tp99 %.2f ms\t(gateway reports: p50 %.2f, p99 %.2f)\n", p.Rate, p.ReceiptP50, p.ReceiptP99, p.TruthP50, p.TruthP99)
		fmt.Fprintf(tw, "\tfloor: commit + publish + apply\tp50 %.2f ms\tp99 %.2f ms\t\n", p.FloorP50, p.FloorP99)
		fmt.Fprintf(tw, "\treceipt / floor\tp50 %.2f ×\tp99 %.2f ×\t\n", p.RatioP50, p.RatioP99)
		fmt.Fprintf(tw, "\twait slack p99 %.2f ms\tsend lateness p99 %.2f ms\tsessiond CPU %.3f ms/revocation\tproblems %d\n", p.SlackP99, p.LateP99, p.CPUPerRevocationMs, p.Problems)
		fmt.Fprintf(tw, "\tmachine busy\tfloor %.0f %%\treceipts %.0f %%\t\n", 100*p.BusyFloor, 100*p.BusyReceipts)
	}
	for _, run := range r.Throughput.Runs {
		fmt.Fprintf(tw, "throughput\t%s\t%.0f req/s\t\t\t\n", run.Name, run.ReqPerSec)
	}
	if r.Throughput.CheckRatio > 0 {
		fmt.Fprintf(tw, "\tratios\tcheck/bare %.2f\tproxy/bare %.2f\t", r.Throughput.CheckRatio, r.Throughput.ProxyRatio)
		if r.Throughput.NginxVsProxyRatio > 0 {
			fmt.Fprintf(tw, "nginx/proxy %.2f", r.Throughput.NginxVsProxyRatio)
		}
		fmt.Fprintln(tw, "\t")
	}
	if r.Revoke.PerSec > 0 {
		fmt.Fprintf(tw, "revocations\tsingle, %d clients\t%.0f /s\tp50 %.2f ms\tp99 %.2f ms\tsessiond CPU %.3f ms/revocation (%.2f cores)\n", r.Revoke.Concurrency, r.Revoke.PerSec, r.Revoke.Latency.P50, r.Revoke.Latency.P99, r.Revoke.SessiondCPUPerRevocationMs, r.Revoke.SessiondCores)
	}
	if r.OrgWide.Sessions > 0 {
		fmt.Fprintf(tw, "org-wide revoke\t%d sessions, %d users\tAPI %.0f ms\tenforced everywhere %.0f ms\t\t\n", r.OrgWide.Sessions, r.OrgWide.Users, r.OrgWide.APIms, r.OrgWide.EnforcedMs)
	}
	for _, g := range r.OrgRule {
		fmt.Fprintf(tw, "bulk by %s, %d sessions\tcall p50 %.1f / p99 %.1f ms\trefused everywhere p50 %.2f / p99 %.2f ms\trows marked p50 %.0f / p99 %.0f ms\t(%d runs)\n",
			g.Filter, g.Sessions, g.Call.P50, g.Call.P99, g.Refused.P50, g.Refused.P99, g.Marked.P50, g.Marked.P99, g.Runs)
		if g.Enforced.N > 0 {
			fmt.Fprintf(tw, "\treceipt enforced (call waits)	p50 %.0f / p99 %.0f ms			\n", g.Enforced.P50, g.Enforced.P99)
		}
	}
	if f := r.Fleet; f.Simulated > 0 {
		fmt.Fprintf(tw, "fleet of %d simulated gateways\tsessiond idle\t%.3f cores without\t%.3f cores with\t(%.0f reports/s heard under load)\n", f.Simulated, f.IdleCoresWithout, f.IdleCoresWith, f.ReportsPerSec)
		fmt.Fprintf(tw, "\trevocations/s without → with\t%.0f → %.0f\t(%.3f ×)\tCPU/revocation %.3f → %.3f ms\n", median(f.RevokeWithout), median(f.RevokeWith), f.ThroughputRatio, median(f.CPUWithout), median(f.CPUWith))
		fmt.Fprintf(tw, "\tunder load, cores\tsessiond's share of the fleet %.3f\tsimulator %.2f\tNATS %.2f\n", f.SessiondFleetCores, f.SimulatorCores, f.NATSCoresWith)
	}
	if r.ColdStart.Entries > 0 {
		fmt.Fprintf(tw, "cold start\t%d live revocations\tready in %.2f s\tRSS %.0f MB (peak %.0f MB)\t\t\n", r.ColdStart.Entries, r.ColdStart.ReadySeconds, r.ColdStart.RSSMB, r.ColdStart.PeakRSSMB)
		fmt.Fprintf(tw, "\tfrom a snapshot\tready in %.2f s\tRSS %.0f MB (peak %.0f MB)\t(%d entries)\t\n", r.ColdStart.SnapshotReadySeconds, r.ColdStart.SnapshotRSSMB, r.ColdStart.SnapshotPeakRSSMB, r.ColdStart.SnapshotEntries)
	}
	for _, run := range r.SSF.Runs {
		fmt.Fprintf(tw, "SETs @ %d revocations/s × %d streams\tscheduled → receiver\tp50 %.2f ms\tp99 %.2f ms\t(max %.1f ms, %d missing, %.0f SETs/s, sessiond %.2f cores)\n",
			run.Rate, run.Streams, run.Delivered.P50, run.Delivered.P99, run.Delivered.Max, run.Missing, run.SetsPerSecMax, run.SessiondCores)
		fmt.Fprintf(tw, "\tfloor: the revoke call's answer\tp50 %.2f ms\tp99 %.2f ms\t(RS256 sign %.0f µs: %.0f/s per core)\n", run.Answer.P50, run.Answer.P99, r.SSF.SignUs, r.SSF.SignsPerCore)
	}
	for _, run := range r.Introspect.Runs {
		fmt.Fprintf(tw, "introspection\t%s\t%.0f req/s\t\t\t\n", run.Name, run.ReqPerSec)
	}
	if o := r.Outage; o.Revocations > 0 {
		fmt.Fprintf(tw, "SSF receiver down %.0f s\t%d SETs (%d/s)\tfirst %.2f s after its return\tall %.2f s after\t(%d missing, %d out of order or twice)\n",
			o.DownSec, o.Revocations, o.Rate, o.FirstSec, o.CatchUpSec, o.Missing, o.OutOfOrder)
	}
	for _, run := range r.Fresh.Runs {
		fmt.Fprintf(tw, "fresh tokens\t%s\t%.0f req/s\t\t\t\n", run.Name, run.ReqPerSec)
	}
	if r.Fresh.VsEd25519 > 0 {
		fmt.Fprintf(tw, "\tratios\tcheck/bare Ed25519 %.2f\tcheck/bare 200 %.2f\tgatewayd %.1f µs CPU a request\t\n", r.Fresh.VsEd25519, r.Fresh.VsBare, r.Fresh.GatewayCPUUsPR)
	}
	for _, h := range r.LeafHop.Summary {
		fmt.Fprintf(tw, "leaf hop @ %d/s, open loop\tapplied, %d direct gateways\tp50 %.2f ms\tp99 %.2f ms\t\n", h.Rate, r.LeafHop.DirectGateways, h.DirectP50, h.DirectP99)
		fmt.Fprintf(tw, "\t%d behind %d leaf nodes\tp50 %.2f ms\tp99 %.2f ms\t\n", r.LeafHop.LeafGateways, r.LeafHop.Leaves, h.LeafP50, h.LeafP99)
		fmt.Fprintf(tw, "\tthe hop: leaf − direct\tp50 %+.2f ms\tp99 %+.2f ms\t(paired p50 %+.2f ms, problems %d)\n", h.HopP50, h.HopP99, h.PairedP50, h.Problems)
	}
	if h := r.HubCPU; h.Revocations > 0 {
		fmt.Fprintf(tw, "hub CPU @ %d/s\tone direct gateway\t%.1f µs/revocation\t(net of idle %.1f)\t\n", h.Rate, h.DirectUs, h.DirectNetUs)
		fmt.Fprintf(tw, "\t%d leaf nodes × %d gateways\t%.1f µs/revocation\t(net of idle %.1f)\t\n", h.Leaves, h.GatewaysPerLeaf, h.PoPUs, h.PoPNetUs)
		fmt.Fprintf(tw, "\tPoPs / direct\t%.2f ×\t(net %.2f ×)\t\n", h.Ratio, h.NetRatio)
	}
	if p := r.Partition; len(p.Runs) > 0 {
		fmt.Fprintf(tw, "partition of a PoP\tfailed closed after the cut\tmedian %.0f ms\tmax %.0f ms\t(bound %.1f s)\n", p.FailClosedMs, p.FailClosedMaxMs, p.MaxStalenessSec)
		fmt.Fprintf(tw, "\tafter the heal: revocation refused\tmedian %.0f ms\tmax %.0f ms\t\n", p.EnforcedMs, p.EnforcedMaxMs)
		fmt.Fprintf(tw, "\tafter the heal: serving again\tmedian %.0f ms\tmax %.0f ms\t(%d rounds, %d violations)\n", p.ServingMs, p.ServingMaxMs, len(p.Runs), p.Violations)
	}
	if r.Introspect.Ratio > 0 {
		fmt.Fprintf(tw, "\tratios\tintrospect/bare %.2f\tintrospect/bare + query %.2f\tsessiond %.2f cores\t\n", r.Introspect.Ratio, r.Introspect.QueryRatio, r.Introspect.SessiondCPU)
	}
	_ = tw.Flush()
}

func writeJSON(path string, r *results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// writeSVG draws a histogram of the samples with the p50 and p99 marked.
func writeSVG(path string, samples []float64, title string) error {
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	p50, p99 := s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
	hi := math.Max(1, s[min(len(s)-1, len(s)*999/1000)]*1.1)
	const W, H, L, B, bins = 800, 400, 60, 50, 60
	counts := make([]int, bins)
	for _, v := range s {
		i := int(v / hi * bins)
		if i >= bins {
			i = bins - 1
		}
		counts[i]++
	}
	peak := 1
	for _, c := range counts {
		peak = max(peak, c)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="20" font-size="14">%s</text>`+"\n", L, escape(title))
	pw, ph := float64(W-L-20), float64(H-B-40)
	for i, c := range counts {
		x := float64(L) + float64(i)*pw/bins
		h := float64(c) / float64(peak) * ph
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a78b5"/>`+"\n", x, float64(H-B)-h, pw/bins-1, h)
	}
	for _, m := range []struct {
		v     float64
		label string
		color string
	}{{p50, "p50", "#2a9d4a"}, {p99, "p99", "#c0392b"}} {
		x := float64(L) + m.v/hi*pw
		fmt.Fprintf(&b, `<line x1="%.1f" y1="40" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4"/><text x="%.1f" y="52" fill="%s">%s %.2f ms</text>`+"\n", x, x, H-B, m.color, x+4, m.color, m.label, m.v)
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", L, H-B, W-20, H-B)
	for i := 0; i <= 5; i++ {
		x := float64(L) + float64(i)*pw/5
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.1f</text>`+"\n", x, H-B+18, hi*float64(i)/5)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">milliseconds (%d samples)</text>`+"\n", L+int(pw/2), H-10, len(s))
	fmt.Fprintf(&b, `<text x="15" y="%d" transform="rotate(-90 15 %d)" text-anchor="middle">count</text>`+"\n", H/2, H/2)
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
