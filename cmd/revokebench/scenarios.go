package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionguard/revoke/internal/proc"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	gatewaypkg "github.com/sessionguard/revoke/services/gateway"
)

// throughput measures /v1/check and the proxy with a mix of valid (90 %),
// revoked (5 %) and invalid (5 %) tokens, next to a bare 200 handler, a bare
// httputil.ReverseProxy and, when installed, NGINX with auth_request, in
// alternating rounds; the medians are reported.
func throughput(ctx context.Context, e *benchEnv, o options, res *results) error {
	f, err := e.makeSessions(ctx, 100, 10)
	if err != nil {
		return err
	}
	n := len(f.tokens)
	kind := make([]int, n) // 0 valid, 1 revoked, 2 invalid
	toks := append([]string(nil), f.tokens...)
	for i := 0; i < n; i++ {
		switch i % 20 {
		case 0:
			kind[i] = 1
			if code, err := e.call(ctx, "DELETE", "/v1/sessions/"+f.sessions[i], e.admin, nil, nil); err != nil || code != 204 {
				return fmt.Errorf("revoke: %d %v", code, err)
			}
		case 1:
			kind[i] = 2
			toks[i] = "eyJhbGciOiJFZERTQSJ9." + uuid.NewString() + ".x"
		}
	}
	g := e.gateways[0]
	var valid []string
	for i, k := range kind {
		if k == 0 {
			valid = append(valid, toks[i])
		}
	}
	if err := e.warm(ctx, valid); err != nil {
		return err
	}
	// wait until the revoked ones are refused
	for i, k := range kind {
		if k != 1 {
			continue
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			if code, _ := e.check(ctx, g, toks[i]); code == 401 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("revoked token still accepted")
			}
			time.Sleep(time.Millisecond)
		}
	}
	bareOK, bareOKURL, err := e.startBare(ctx, "ok", "")
	if err != nil {
		return err
	}
	defer bareOK.Stop()
	bareProxy, bareProxyURL, err := e.startBare(ctx, "proxy", e.upURL)
	if err != nil {
		return err
	}
	defer bareProxy.Stop()
	nginxURL, stopNginx, nginxErr := startNginx(e, g)
	if stopNginx != nil {
		defer stopNginx()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 4096}}
	mk := func(base string) func(i int) *http.Request {
		return func(i int) *http.Request {
			r, _ := http.NewRequest("GET", base, nil)
			r.Header.Set("Authorization", "Bearer "+toks[i%n])
			return r
		}
	}
	any200 := func(_, s int) bool { return s == 200 }
	authz := func(i, s int) bool { return (kind[i%n] == 0) == (s == 200) && (s == 200 || s == 401) }
	runs := []struct {
		name string
		url  string
		want func(i, s int) bool
	}{
		{"bare 200 handler", bareOKURL + "/v1/check", any200},
		{"gatewayd /v1/check", g.control + "/v1/check", authz},
		{"bare httputil.ReverseProxy", bareProxyURL + "/x", any200},
		{"gatewayd proxy", g.proxy + "/x", authz},
	}
	if nginxURL != "" {
		runs = append(runs, struct {
			name string
			url  string
			want func(i, s int) bool
		}{"nginx auth_request → /v1/check", nginxURL + "/x", authz})
	}
	per := o.duration / 3
	got := map[string][]float64{}
	for round := 0; round < 3; round++ {
		for _, r := range runs {
			rps, bad := hammer(ctx, client, o.concurrency, per, mk(r.url), r.want)
			if bad > 0 {
				return fmt.Errorf("%s: %d wrong answers", r.name, bad)
			}
			got[r.name] = append(got[r.name], rps)
		}
	}
	med := func(name string) float64 {
		v := append([]float64(nil), got[name]...)
		sort.Float64s(v)
		return round(v[len(v)/2])
	}
	res.Throughput = throughputResult{Concurrency: o.concurrency, Mix: "90% valid, 5% revoked, 5% invalid", Rounds: 3}
	for _, r := range runs {
		res.Throughput.Runs = append(res.Throughput.Runs, rpsResult{Name: r.name, ReqPerSec: med(r.name), Rounds: got[r.name]})
	}
	res.Throughput.CheckRatio = round(med("gatewayd /v1/check") / med("bare 200 handler"))
	res.Throughput.ProxyRatio = round(med("gatewayd proxy") / med("bare httputil.ReverseProxy"))
	if nginxURL != "" {
		res.Throughput.NginxVsProxyRatio = round(med("nginx auth_request → /v1/check") / med("gatewayd proxy"))
	} else {
		res.Throughput.Note = "nginx not measured: " + nginxErr
	}
	return nil
}

// startNginx runs NGINX with auth_request to g's /v1/check in front of the
// upstream, when an nginx binary is installed.
func startNginx(e *benchEnv, g *gateway) (string, func(), string) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			return "", nil, "no nginx binary"
		}
		bin = "/usr/sbin/nginx"
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		return "", nil, err.Error()
	}
	dir := filepath.Join(e.dir, "nginx")
	_ = os.MkdirAll(dir, 0o755)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	up := strings.TrimPrefix(e.upURL, "http://")
	ctl := strings.TrimPrefix(g.control, "http://")
	conf := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/body; proxy_temp_path %[2]s/proxy; fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi; scgi_temp_path %[2]s/scgi;
  upstream app { server %[3]s; keepalive 256; }
  upstream auth { server %[4]s; keepalive 256; }
  server {
    listen %[5]s;
    location / {
      auth_request /_auth;
      auth_request_set $auth_user $upstream_http_x_auth_user;
      proxy_set_header X-Auth-User $auth_user;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location = /_auth {
      internal;
      proxy_pass http://auth/v1/check;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_http_version 1.1; proxy_set_header Connection "";
    }
  }
}
`, user, dir, up, ctl, addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return "", nil, err.Error()
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	if err := cmd.Start(); err != nil {
		return "", nil, err.Error()
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	u := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(u + "/"); err == nil {
			resp.Body.Close()
			return u, stop, ""
		}
	}
	stop()
	return "", nil, "nginx did not start"
}

// revokeThroughput: closed-loop single-session revocations through the API,
// with sessiond's CPU per revocation; with -profile, sessiond's CPU profile
// of the run is written too.
func revokeThroughput(ctx context.Context, e *benchEnv, o options, res *results) error {
	f, err := e.makeSessions(ctx, int(5000*o.duration.Seconds())/50+1, 50)
	if err != nil {
		return err
	}
	wait := e.profile(ctx, o.duration, o.profile)
	r, err := revokeRun(ctx, e, f.sessions, o.concurrency, o.duration)
	if err != nil {
		return err
	}
	if err := wait(); err != nil {
		return err
	}
	if o.profile != "" {
		fmt.Fprintf(e.log, "  sessiond's CPU profile: %s (go tool pprof -top %s)\n", o.profile, o.profile)
	}
	res.Revoke = r
	return nil
}

// revokeRun revokes sessions from conc closed-loop clients for d, and
// measures the rate, the latency and sessiond's CPU per revocation.
func revokeRun(ctx context.Context, e *benchEnv, sessions []string, conc int, d time.Duration) (revokeResult, error) {
	var next, done, bad int64
	var mu sync.Mutex
	var lat []float64
	stop := time.Now().Add(d)
	cpu0 := procCPU(e.sessiond.Pid())
	start := time.Now()
	err := parallel(ctx, conc, conc, func(int) error {
		for time.Now().Before(stop) {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			if int(i) >= len(sessions) {
				return fmt.Errorf("ran out of sessions")
			}
			t := time.Now()
			code, err := e.call(ctx, "DELETE", "/v1/sessions/"+sessions[i], e.admin, nil, nil)
			mu.Lock()
			if err != nil || code != 204 {
				bad++
			} else {
				done++
				lat = append(lat, ms(time.Since(t)))
			}
			mu.Unlock()
		}
		return nil
	})
	elapsed := time.Since(start)
	cpu := procCPU(e.sessiond.Pid()) - cpu0
	if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return revokeResult{}, err
	}
	if bad > 0 {
		return revokeResult{}, fmt.Errorf("%d revocations failed", bad)
	}
	return revokeResult{Concurrency: conc, PerSec: round(float64(done) / elapsed.Seconds()), Latency: summarise(lat),
		SessiondCPUPerRevocationMs: round(ms(cpu) / float64(max(1, done))), SessiondCores: round(cpu.Seconds() / elapsed.Seconds())}, nil
}

// profile starts taking sessiond's CPU profile over the next d, to path,
// and returns the wait for it; with no path (or no profiler) it takes none.
func (e *benchEnv) profile(ctx context.Context, d time.Duration, path string) (wait func() error) {
	if path == "" || e.debug == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() { done <- fetchProfile(ctx, "http://"+e.debug, d, path) }()
	return func() error {
		if err := <-done; err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		return nil
	}
}

// fetchProfile writes sessiond's CPU profile over d to path.
func fetchProfile(ctx context.Context, debug string, d time.Duration, path string) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", debug, max(1, int(d.Seconds()))), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// orgWide revokes every session of an org (every user's, through
// DELETE /v1/users/{id}/sessions) and waits until a sample of its tokens is
// refused at every gateway.
func orgWide(ctx context.Context, e *benchEnv, o options, res *results) error {
	perUser := 100
	f, err := e.makeSessions(ctx, max(1, o.orgSessions/perUser), perUser)
	if err != nil {
		return err
	}
	var sample []string
	for i := 0; i < len(f.tokens); i += max(1, len(f.tokens)/200) {
		sample = append(sample, f.tokens[i])
	}
	if err := e.warm(ctx, sample); err != nil {
		return err
	}
	start := time.Now()
	var revoked int64
	var mu sync.Mutex
	if err := parallel(ctx, len(f.users), 16, func(i int) error {
		var out struct{ Revoked int64 }
		code, err := e.call(ctx, "DELETE", "/v1/users/"+f.users[i]+"/sessions", e.admin, nil, &out)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		mu.Lock()
		revoked += out.Revoked
		mu.Unlock()
		return err
	}); err != nil {
		return err
	}
	apiDone := time.Since(start)
	for _, g := range e.gateways {
		if err := parallel(ctx, len(sample), 8, func(i int) error {
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if code, _ := e.check(ctx, g, sample[i]); code == 401 {
					return nil
				}
			}
			return fmt.Errorf("a token of the org is still accepted at %s", g.control)
		}); err != nil {
			return err
		}
	}
	res.OrgWide = orgWideResult{Sessions: len(f.sessions), Users: len(f.users), Revoked: revoked, APIms: ms(apiDone), EnforcedMs: ms(time.Since(start)), Sampled: len(sample)}
	return nil
}

// coldStart fills REVOCATIONS with live entries and starts a new gateway:
// time to ready and its memory. The running gateways are stopped first, as
// a cold start happens on a machine of its own: they would otherwise share
// the two cores with it, following the same million entries live.
func coldStart(ctx context.Context, e *benchEnv, o options, res *results) error {
	e.stopGateways()
	nc, err := nats.Connect(e.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return err
	}
	// Ten million entries take minutes to publish and minutes to replay,
	// longer than the stream keeps a message (the access-token TTL + 1 min):
	// for this scenario the stream and its entries live 40 minutes, so
	// that every cold start has all of them to load.
	const life = 40 * time.Minute
	str, err := js.Stream(ctx, events.StreamRevocations)
	if err != nil {
		return err
	}
	cfg := str.CachedInfo().Config
	if cfg.MaxAge < life {
		cfg.MaxAge = life
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("lengthen the stream's max age: %w", err)
		}
	}
	now := time.Now().UTC()
	pubStart := time.Now()
	for i := 0; i < o.coldEntries; i++ {
		ev := events.SessionRevoked{EventID: uuid.NewString(), SID: uuid.NewString(), Sub: uuid.NewString(), Org: uuid.NewString(),
			Reason: events.ReasonAdminRevoke, RevokedAt: now, ExpiresAt: now.Add(life - time.Minute)}
		data, err := events.Encode(ev)
		if err != nil {
			return err
		}
		msg := nats.NewMsg(ev.Subject())
		msg.Data = data
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.EventID), jetstream.WithStallWait(30*time.Second)); err != nil {
			return err
		}
		if i%50_000 == 49_999 { // keep the acks in step: 10M at once stalls the publisher
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				return fmt.Errorf("publishing %d entries stalled", o.coldEntries)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("publishing %d entries timed out", o.coldEntries)
	}
	pub := time.Since(pubStart)
	pubEnd := time.Now()
	e.readyWait = 10 * time.Minute
	defer func() { e.readyWait = 0 }()
	cold := func(name string, env ...string) (time.Duration, int64, int64, int, error) {
		t0 := time.Now()
		g, err := e.startGateway(ctx, name, env...)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		ready := time.Since(t0)
		rss, hwm := procMemory(g.proc.Pid())
		var body struct {
			Entries int `json:"blocklist_entries"`
		}
		if resp, err := http.Get(g.control + "/readyz"); err == nil {
			_ = jsonDecode(resp, &body)
		}
		g.proc.Stop()
		return ready, rss, hwm, body.Entries, nil
	}
	// The full replay, with snapshots off.
	ready, rss, hwm, entries, err := cold("gatewayd-cold", "GATEWAY_SNAPSHOT_INTERVAL=0")
	if err != nil {
		return err
	}
	res.ColdStart = coldStartResult{Entries: o.coldEntries, PublishSeconds: round(pub.Seconds()), ReadySeconds: round(ready.Seconds()),
		RSSMB: round(float64(rss) / 1024), PeakRSSMB: round(float64(hwm) / 1024), BlocklistEntries: entries}
	// A gateway that writes a snapshot of all of it, then a cold start that
	// loads it (and the tail, empty here).
	writer, err := e.startGateway(ctx, "gatewayd-snapshot-writer", "GATEWAY_SNAPSHOT_INTERVAL=1s")
	if err != nil {
		return err
	}
	snaps, err := js.ObjectStore(ctx, gatewaypkg.SnapshotsBucket)
	if err != nil {
		writer.proc.Stop()
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if info, err := snaps.GetInfo(ctx, "blocklist"); err == nil && info.ModTime.After(pubEnd) {
			break
		}
		if time.Now().After(deadline) {
			writer.proc.Stop()
			return errors.New("no snapshot was written after the publish")
		}
		time.Sleep(100 * time.Millisecond)
	}
	writer.proc.Stop()
	ready, rss, hwm, entries, err = cold("gatewayd-cold-snapshot")
	if err != nil {
		return err
	}
	res.ColdStart.SnapshotReadySeconds, res.ColdStart.SnapshotRSSMB = round(ready.Seconds()), round(float64(rss)/1024)
	res.ColdStart.SnapshotPeakRSSMB, res.ColdStart.SnapshotEntries = round(float64(hwm)/1024), entries
	if entries != res.ColdStart.BlocklistEntries {
		return fmt.Errorf("the cold start from the snapshot holds %d entries, the full replay %d", entries, res.ColdStart.BlocklistEntries)
	}
	return nil
}

// procMemory reads VmRSS and VmHWM (kB) of a process.
func procMemory(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// procCPU is a process's user and system CPU time so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux this runs on.
const clockTicks = 100

// cpuByCommand is the user and system CPU time so far of every process on
// the machine, summed by command name (postgres, nats-server, sessiond,
// gatewayd, ...): PostgreSQL's work is done by its backends, which a
// process's own times do not include.
func cpuByCommand() map[string]time.Duration {
	out := map[string]time.Duration{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		out[s[open+1:end]] += procCPU(pid)
	}
	return out
}

// cpuSince is each command's CPU time since before, of those that used
// at least 10 ms.
func cpuSince(before map[string]time.Duration) map[string]float64 {
	out := map[string]float64{}
	for cmd, d := range cpuByCommand() {
		if used := d - before[cmd]; used >= 10*time.Millisecond {
			out[cmd] = round(used.Seconds())
		}
	}
	return out
}
