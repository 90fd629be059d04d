package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The standards scenarios.
//
// ssf: CAEP session-revoked SETs pushed to receivers on loopback. The
// receivers run in this process (they measure; sessiond is what is
// measured): one HTTP server, one path per stream, that notes the instant
// each SET arrives before it reads anything else, and answers 202. At each
// rate, revocations are sent open loop (revocation i at start + i/rate,
// whatever the answers before it) and every SET of every stream is timed
// from its revocation's scheduled instant. Beside it, the floor: the
// revocation call's own answer (its transaction committed), and what one
// core of this machine signs with RS256 and 2048-bit keys, which the CAEP
// interoperability profile requires of every SET.
//
// introspect: POST /oauth2/introspect for a valid access token whose
// signature sessiond has verified before (cached), closed loop, beside a
// bare 200 handler, in alternating rounds.

type ssfRun struct {
	Rate            int     `json:"revocations_per_sec"`
	Streams         int     `json:"streams"`
	Revocations     int     `json:"revocations"`
	SETs            int     `json:"sets_expected"`
	Missing         int     `json:"sets_missing"`
	Delivered       stats   `json:"scheduled_to_delivered_ms"`
	Answer          stats   `json:"scheduled_to_revoke_answer_ms"`
	SessiondCores   float64 `json:"sessiond_cores"`
	SetsPerSecMax   float64 `json:"sets_per_sec_delivered"`
	LastDeliveredMs float64 `json:"last_set_after_last_send_ms"`
}

type ssfResult struct {
	Runs []ssfRun `json:"runs"`
	// SignUs is one RS256 signature of a SET's size (2048-bit key) on one
	// core of this machine, in the tool's process: the floor of a SET's
	// cost, and SignsPerCore what one core can sign in a second.
	SignUs       float64 `json:"rs256_sign_us"`
	SignsPerCore float64 `json:"rs256_signs_per_core_sec"`
}

type introspectResult struct {
	Concurrency int         `json:"concurrency"`
	Runs        []rpsResult `json:"runs"`
	Ratio       float64     `json:"introspect_vs_bare_200"`
	QueryRatio  float64     `json:"introspect_vs_bare_query"`
	SessiondCPU float64     `json:"sessiond_cores"`
}

// ssfScenario measures SET delivery at each of -rates with -ssf-streams
// push streams.
func ssfScenario(ctx context.Context, e *benchEnv, o options, res *results) error {
	res.SSF.SignUs, res.SSF.SignsPerCore = signFloor()
	fmt.Fprintf(e.log, "  RS256 sign (2048-bit): %.0f µs, %.0f signs/s on one core\n", res.SSF.SignUs, res.SSF.SignsPerCore)
	total := 0
	for _, rate := range o.rates {
		total += int(float64(rate) * o.duration.Seconds())
	}
	f, rcv, err := e.ssfFixture(ctx, total, o.ssfStreams)
	if err != nil {
		return err
	}
	defer rcv.close()
	next := 0
	for _, rate := range o.rates {
		n := int(float64(rate) * o.duration.Seconds())
		sids := f.sessions[next : next+n]
		next += n
		run, err := e.ssfOpenLoop(ctx, rcv, sids, rate, o.ssfStreams)
		if err != nil {
			return fmt.Errorf("at %d/s: %w", rate, err)
		}
		res.SSF.Runs = append(res.SSF.Runs, run)
		fmt.Fprintf(e.log, "  %d/s × %d streams: SET delivered p50 %.2f p99 %.2f ms (max %.1f), revoke answered p50 %.2f p99 %.2f ms, %d missing, sessiond %.2f cores\n",
			rate, o.ssfStreams, run.Delivered.P50, run.Delivered.P99, run.Delivered.Max, run.Answer.P50, run.Answer.P99, run.Missing, run.SessiondCores)
	}
	return nil
}

// ssfFixture makes an org of at least n sessions, an API client of it,
// the receivers and the client's streams to them (push, session-revoked),
// and waits for their lanes to start.
func (e *benchEnv) ssfFixture(ctx context.Context, n, streams int) (*fixture, *setReceiver, error) {
	f, err := e.makeSessions(ctx, max(1, (n+9)/10), 10)
	if err != nil {
		return nil, nil, err
	}
	id, secret, err := e.createClient(ctx, f.org, "ssf.manage", "ssf.read")
	if err != nil {
		return nil, nil, err
	}
	token, err := e.clientToken(ctx, id, secret)
	if err != nil {
		return nil, nil, err
	}
	rcv, err := startSETReceiver(streams)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i < streams; i++ {
		body := map[string]any{"delivery": map[string]string{"method": "urn:ietf:rfc:8935", "endpoint_url": fmt.Sprintf("%s/s/%d", rcv.url, i)},
			"events_requested": []string{"https://schemas.openid.net/secevent/caep/event-type/session-revoked"}}
		if code, err := e.call(ctx, "POST", "/ssf/streams", token, body, nil); err != nil || code != 201 {
			rcv.close()
			return nil, nil, fmt.Errorf("create stream %d: %d %v", i, code, err)
		}
	}
	time.Sleep(2 * time.Second) // the streams' lanes start within a second of their creation
	return f, rcv, nil
}

// ssfOpenLoop revokes sids at rate, open loop, and times every stream's SET.
func (e *benchEnv) ssfOpenLoop(ctx context.Context, rcv *setReceiver, sids []string, rate, streams int) (ssfRun, error) {
	run := ssfRun{Rate: rate, Streams: streams, Revocations: len(sids), SETs: len(sids) * streams}
	scheduled := make([]time.Time, len(sids))
	answered := make([]time.Duration, len(sids))
	index := make(map[string]int, len(sids))
	for i, sid := range sids {
		index[sid] = i
	}
	rcv.reset(index)
	cpu0 := cpuByCommand()
	start := time.Now().Add(50 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, len(sids))
	for i, sid := range sids {
		at := start.Add(time.Duration(float64(i) * float64(time.Second) / float64(rate)))
		scheduled[i] = at
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := e.call(ctx, "DELETE", "/v1/sessions/"+sid, e.admin, nil, nil)
			answered[i] = time.Since(at)
			if err != nil || code != 204 {
				errs <- fmt.Errorf("revoke %s: %d %v", sid, code, err)
			}
		}()
	}
	wg.Wait()
	lastSend := scheduled[len(scheduled)-1]
	select {
	case err := <-errs:
		return run, err
	default:
	}
	deadline := time.Now().Add(2 * time.Minute)
	for rcv.count() < run.SETs && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	run.SessiondCores = round(cpuSince(cpu0)["sessiond"] / time.Since(start).Seconds())
	var lat []float64
	var last time.Time
	first := time.Time{}
	rcv.mu.Lock()
	for s := 0; s < streams; s++ {
		for i, at := range rcv.arrived[s] {
			if at.IsZero() {
				run.Missing++
				continue
			}
			lat = append(lat, ms(at.Sub(scheduled[i])))
			if at.After(last) {
				last = at
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	rcv.mu.Unlock()
	run.Delivered = summarise(lat)
	ans := make([]float64, len(answered))
	for i, d := range answered {
		ans[i] = ms(d)
	}
	run.Answer = summarise(ans)
	if !last.IsZero() {
		run.LastDeliveredMs = round(ms(last.Sub(lastSend)))
		if span := last.Sub(first).Seconds(); span > 0 {
			run.SetsPerSecMax = round(float64(len(lat)) / span)
		}
	}
	return run, nil
}

// setReceiver is the push receivers of the ssf scenario.
type setReceiver struct {
	srv *http.Server
	url string

	mu      sync.Mutex
	index   map[string]int // session id → revocation number
	arrived [][]time.Time  // per stream, per revocation
	n       int
	down    bool // answer 503 to everything (an outage)
	refusal int  // requests answered 503
	dups    int  // SETs that came again after a 202 (not counted in n)
}

func (r *setReceiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *setReceiver) refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refusal
}

func (r *setReceiver) duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dups
}

func startSETReceiver(streams int) (*setReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &setReceiver{url: "http://" + ln.Addr().String(), arrived: make([][]time.Time, streams)}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.receive), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *setReceiver) close() { _ = r.srv.Close() }

func (r *setReceiver) reset(index map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index, r.n = index, 0
	for s := range r.arrived {
		r.arrived[s] = make([]time.Time, len(index))
	}
}

func (r *setReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// receive notes when a SET arrived, then finds which revocation and stream
// it belongs to (its payload's sub_id.session.id; the path's stream).
func (r *setReceiver) receive(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	r.mu.Lock()
	down := r.down
	if down {
		r.refusal++
	}
	r.mu.Unlock()
	if down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(req.Body)
	var stream int
	if _, err := fmt.Sscanf(req.URL.Path, "/s/%d", &stream); err != nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	parts := strings.Split(string(body), ".")
	var claims struct {
		SubID struct {
			Session struct {
				ID string `json:"id"`
			} `json:"session"`
		} `json:"sub_id"`
	}
	if len(parts) == 3 {
		if p, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			_ = json.Unmarshal(p, &claims)
		}
	}
	w.WriteHeader(http.StatusAccepted)
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.index[claims.SubID.Session.ID]; ok && stream < len(r.arrived) {
		if r.arrived[stream][i].IsZero() {
			r.arrived[stream][i] = at
			r.n++
		} else {
			r.dups++
		}
	}
}

// signFloor times RS256 signatures of a SET-sized payload with a 2048-bit
// key on one goroutine.
func signFloor() (us, perSec float64) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return 0, 0
	}
	payload := bytes.Repeat([]byte("x"), 700)
	const n = 300
	start := time.Now()
	for i := 0; i < n; i++ {
		payload[0] = byte(i)
		d := sha256.Sum256(payload)
		if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:]); err != nil {
			return 0, 0
		}
	}
	per := time.Since(start) / n
	return round(float64(per.Nanoseconds()) / 1000), round(float64(time.Second) / float64(per))
}

// createClient registers an API client of org with scopes.
func (e *benchEnv) createClient(ctx context.Context, org string, scopes ...string) (string, string, error) {
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	code, err := e.call(ctx, "POST", "/v1/clients", e.admin, map[string]any{"name": "revokebench", "org_id": org, "scopes": scopes}, &c)
	if err != nil || code != 201 {
		return "", "", fmt.Errorf("create client: %d %v", code, err)
	}
	return c.ClientID, c.ClientSecret, nil
}

// clientToken is the client credentials grant.
func (e *benchEnv) clientToken(ctx context.Context, id, secret string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", e.api+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := e.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&t) != nil {
		return "", fmt.Errorf("client token: %d", resp.StatusCode)
	}
	return t.AccessToken, nil
}

// introspectScenario measures RFC 7662 introspection of a cached valid
// token, beside a bare 200 handler, in alternating rounds.
func introspectScenario(ctx context.Context, e *benchEnv, o options, res *results) error {
	f, err := e.makeSessions(ctx, 10, 10)
	if err != nil {
		return err
	}
	id, secret, err := e.createClient(ctx, f.org, "introspect")
	if err != nil {
		return err
	}
	bare, bareURL, err := e.startBare(ctx, "ok", "")
	if err != nil {
		return err
	}
	defer bare.Stop()
	query, queryURL, err := e.startBare(ctx, "query", "", "-database", e.pg.URL("revoke"))
	if err != nil {
		return err
	}
	defer query.Stop()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	n := len(f.tokens)
	forms := make([]string, n)
	for i, t := range f.tokens {
		forms[i] = "token=" + url.QueryEscape(t) + "&token_type_hint=access_token"
	}
	mk := func(base string) func(i int) *http.Request {
		return func(i int) *http.Request {
			r, _ := http.NewRequest("POST", base, strings.NewReader(forms[i%n]))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Authorization", auth)
			return r
		}
	}
	// Every token once, so its signature is verified and cached.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 4096}}
	for i := 0; i < n; i++ {
		resp, err := client.Do(mk(e.api + "/oauth2/introspect")(i))
		if err != nil {
			return err
		}
		var out struct {
			Active bool `json:"active"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if !out.Active {
			return fmt.Errorf("introspection of a fresh token: %d, not active", resp.StatusCode)
		}
	}
	runs := []struct{ name, url string }{{"bare 200 handler", bareURL + "/oauth2/introspect"},
		{"bare handler + one PostgreSQL round trip", queryURL + "/oauth2/introspect"}, {"sessiond /oauth2/introspect", e.api + "/oauth2/introspect"}}
	got := map[string][]float64{}
	per := o.duration / 3
	cpu := 0.0
	for round := 0; round < 3; round++ {
		for _, r := range runs {
			if o.profile != "" && round == 0 && r.name != "bare 200 handler" {
				wait := e.profile(ctx, per, o.profile+".introspect")
				defer func() { _ = wait() }()
			}
			cpu0 := cpuByCommand()
			start := time.Now()
			rps, bad := hammer(ctx, client, o.concurrency, per, mk(r.url), func(_, s int) bool { return s == 200 })
			if bad > 0 {
				return fmt.Errorf("%s: %d wrong answers", r.name, bad)
			}
			if r.name == "sessiond /oauth2/introspect" {
				cpu += cpuSince(cpu0)["sessiond"] / time.Since(start).Seconds() / 3
			}
			got[r.name] = append(got[r.name], rps)
		}
	}
	med := func(name string) float64 { return round(median(got[name])) }
	res.Introspect = introspectResult{Concurrency: o.concurrency, SessiondCPU: round(cpu)}
	for _, r := range runs {
		res.Introspect.Runs = append(res.Introspect.Runs, rpsResult{Name: r.name, ReqPerSec: med(r.name), Rounds: got[r.name]})
	}
	res.Introspect.Ratio = round(med("sessiond /oauth2/introspect") / med("bare 200 handler"))
	res.Introspect.QueryRatio = round(med("sessiond /oauth2/introspect") / med("bare handler + one PostgreSQL round trip"))
	fmt.Fprintf(e.log, "  introspect %.0f/s, bare %.0f/s (%.2f ×), bare + query %.0f/s (%.2f ×), sessiond %.2f cores\n", med("sessiond /oauth2/introspect"),
		med("bare 200 handler"), res.Introspect.Ratio, med("bare handler + one PostgreSQL round trip"), res.Introspect.QueryRatio, res.Introspect.SessiondCPU)
	return nil
}

// outageResult is the ssf-outage scenario's: a push receiver down for a
// while, revocations going on, then back.
type outageResult struct {
	DownSec     float64 `json:"receiver_down_sec"`
	Rate        int     `json:"revocations_per_sec"`
	Revocations int     `json:"revocations"`
	Missing     int     `json:"sets_missing"`
	OutOfOrder  int     `json:"sets_out_of_order"`
	// CatchUpSec is from the receiver's return to its last SET; FirstSec
	// to its first.
	CatchUpSec   float64 `json:"catch_up_sec"`
	FirstSec     float64 `json:"first_set_after_return_sec"`
	PushAttempts int     `json:"push_attempts_while_down"`
}

// outageScenario takes a push receiver down for -outage while revocations
// go on at -outage-rate, brings it back, and times how long until it has
// every SET, checking that each came once and in order.
func outageScenario(ctx context.Context, e *benchEnv, o options, res *results) error {
	n := int(float64(o.outageRate) * o.outage.Seconds())
	f, rcv, err := e.ssfFixture(ctx, n, 1)
	if err != nil {
		return err
	}
	defer rcv.close()
	index := map[string]int{}
	for i, sid := range f.sessions[:n] {
		index[sid] = i
	}
	rcv.reset(index)
	rcv.setDown(true)
	start := time.Now()
	lastLogin := start
	for i, sid := range f.sessions[:n] {
		at := start.Add(time.Duration(float64(i) * float64(time.Second) / float64(o.outageRate)))
		time.Sleep(time.Until(at))
		if time.Since(lastLogin) > 4*time.Minute { // the admin's access token lives 5 minutes
			if err := e.loginAdmin(ctx); err != nil {
				return err
			}
			lastLogin = time.Now()
		}
		if code, err := e.call(ctx, "DELETE", "/v1/sessions/"+sid, e.admin, nil, nil); err != nil || code != 204 {
			return fmt.Errorf("revoke: %d %v", code, err)
		}
		if i%(o.outageRate*60) == 0 {
			fmt.Fprintf(e.log, "  receiver down %.0f s, %d revocations\n", time.Since(start).Seconds(), i)
		}
	}
	time.Sleep(time.Until(start.Add(o.outage)))
	attempts := rcv.refused()
	back := time.Now()
	rcv.setDown(false)
	deadline := back.Add(5 * time.Minute)
	for rcv.count() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r := outageResult{DownSec: round(back.Sub(start).Seconds()), Rate: o.outageRate, Revocations: n, PushAttempts: attempts}
	rcv.mu.Lock()
	var first, last time.Time
	prev := time.Time{}
	for _, at := range rcv.arrived[0] {
		if at.IsZero() {
			r.Missing++
			continue
		}
		if at.Before(prev) {
			r.OutOfOrder++
		}
		prev = at
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	rcv.mu.Unlock()
	r.OutOfOrder += rcv.duplicates()
	if !last.IsZero() {
		r.CatchUpSec, r.FirstSec = round(last.Sub(back).Seconds()), round(first.Sub(back).Seconds())
	}
	res.Outage = r
	fmt.Fprintf(e.log, "  back after %.0f s: first SET %.2f s later, all %d in %.2f s (%d missing, %d out of order; %d pushes refused while down)\n",
		r.DownSec, r.FirstSec, n, r.CatchUpSec, r.Missing, r.OutOfOrder, r.PushAttempts)
	return nil
}

// loginAdmin signs the bench's admin in again.
func (e *benchEnv) loginAdmin(ctx context.Context) error {
	var p struct {
		AccessToken string `json:"access_token"`
	}
	if code, err := e.call(ctx, "POST", "/v1/auth/login", "", map[string]string{"email": "bench@example.com", "password": "bench-password"}, &p); err != nil || code != 200 {
		return fmt.Errorf("admin login: %d %v", code, err)
	}
	e.admin = p.AccessToken
	return nil
}
