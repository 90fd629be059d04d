package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sessionguard/revoke/internal/testenv"
)

// The Shared Signals transmitter, driven by the receiver of
// ssf_receiver_test.go over real HTTP, against a real sessiond, PostgreSQL
// and NATS JetStream.

// ssfSystem is a system whose push receivers may be plain http (test
// servers); production requires https.
func ssfSystem(t *testing.T) *system {
	return newSystemWith(t, 0, systemOptions{env: map[string]string{"SSF_ALLOW_HTTP": "true", "SSF_ALLOW_PRIVATE_NETWORKS": "true"}})
}

// signedIn creates a member of org and signs it in.
func (s *system) signedIn(org string) (string, string, pair) {
	s.t.Helper()
	email := fmt.Sprintf("m%d@example.com", time.Now().UnixNano())
	id := s.member(org, "user", email)
	return id, email, s.login(email, "password-1")
}

// revokeSession revokes a session as the admin.
func (s *system) revokeSession(sid string) {
	s.t.Helper()
	if code := s.do("DELETE", "/v1/sessions/"+sid, s.admin, nil, nil); code != 200 && code != 204 {
		s.t.Fatalf("revoke %s: %d", sid, code)
	}
}

func TestSharedSignalsPushAsAReceiverWould(t *testing.T) {
	t.Parallel()
	s := ssfSystem(t)
	orgA, orgB := s.org("ssf a"), s.org("ssf b")
	rc := newReceiver(t, s, orgA)

	c := rc.cfg
	if c.SpecVersion != "1_0" || c.Issuer != "http://sessiond.test" || !slices.Contains(c.DeliveryMethodsSupported, methodPush) ||
		!slices.Contains(c.DeliveryMethodsSupported, methodPoll) || c.ConfigurationEndpoint == "" || c.StatusEndpoint == "" ||
		c.VerificationEndpoint == "" || c.AddSubjectEndpoint == "" || c.RemoveSubjectEndpoint == "" || c.DefaultSubjects != "ALL" ||
		len(c.AuthorizationSchemes) == 0 || c.AuthorizationSchemes[0]["spec_urn"] != "urn:ietf:rfc:6749" {
		t.Fatalf("configuration does not meet the interoperability profile: %+v", c)
	}

	st := rc.createPush(caepSessionRevoked, riscAccountDisabled, riscAccountEnabled, "urn:example:not-an-event")
	if st.Iss != c.Issuer || st.Aud != rc.clientID || st.Delivery.Method != methodPush || st.MinVerificationInterval <= 0 ||
		!slices.Equal(st.EventsDelivered, []string{caepSessionRevoked, riscAccountDisabled, riscAccountEnabled}) {
		t.Fatalf("created stream: %+v", st)
	}
	var one streamConfig
	if code := rc.call("GET", c.ConfigurationEndpoint+"?stream_id="+st.StreamID, rc.token, nil, &one); code != 200 || one.StreamID != st.StreamID {
		t.Fatalf("read stream: %d %+v", code, one)
	}
	var all []streamConfig
	if code := rc.call("GET", c.ConfigurationEndpoint, rc.token, nil, &all); code != 200 || len(all) != 1 || all[0].StreamID != st.StreamID {
		t.Fatalf("list streams: %d %+v", code, all)
	}
	var status struct{ StreamID, Status string }
	if code := rc.call("GET", c.StatusEndpoint+"?stream_id="+st.StreamID, rc.token, nil, &status); code != 200 || status.Status != "enabled" {
		t.Fatalf("status: %d %+v", code, status)
	}

	// Verification (SSF 1.0 section 8.1.4): the state comes back.
	if code := rc.call("POST", c.VerificationEndpoint, rc.token, map[string]string{"stream_id": st.StreamID, "state": "state-1"}, nil); code != 204 {
		t.Fatalf("verification: %d", code)
	}
	v := rc.waitFor(ssfVerification, func(s receivedSET) bool { return s.event["state"] == "state-1" }, "the verification event")
	if v.subID["id"] != st.StreamID {
		t.Errorf("verification names %v, not the stream", v.subID)
	}

	// A session of org A revoked by an admin: one session-revoked SET.
	userA, emailA, pa := s.signedIn(orgA)
	s.revokeSession(pa.SessionID)
	sr := rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == pa.SessionID }, "the revoked session")
	tenant, _ := sr.subID["tenant"].(map[string]any)
	if sr.subID["format"] != "complex" || subjectUser(sr) != emailA || tenant["id"] != orgA || sr.event["initiating_entity"] != "admin" {
		t.Errorf("session-revoked SET: sub_id %v, event %v", sr.subID, sr.event)
	}
	if ts, _ := sr.event["event_timestamp"].(float64); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("event_timestamp %v is not the revocation's time", sr.event["event_timestamp"])
	}
	if txn, _ := sr.claims["txn"].(string); txn == "" {
		t.Errorf("no txn in %v", sr.claims)
	}

	// Org B's sessions are not org A's receiver's: a revocation there is
	// not delivered, though one of A after it is.
	_, _, pb := s.signedIn(orgB)
	s.revokeSession(pb.SessionID)
	_, _, pa2 := s.signedIn(orgA)
	s.revokeSession(pa2.SessionID)
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == pa2.SessionID }, "org A's second revocation")
	if slices.Contains(rc.revokedSessions(), pb.SessionID) {
		t.Errorf("org A's receiver got org B's session %s", pb.SessionID)
	}

	// Disabling an account: RISC account-disabled; enabling it again,
	// account-enabled; signing out of every session, one SET each.
	_ = s.login(emailA, "password-1")
	if code := s.do("PATCH", "/v1/users/"+userA, s.admin, map[string]bool{"disabled": true}, nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	d := rc.waitFor(riscAccountDisabled, nil, "account-disabled")
	if d.subID["format"] != "email" || d.subID["email"] != emailA {
		t.Errorf("account-disabled names %v", d.subID)
	}
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool {
		return subjectUser(x) == emailA && x.event["initiating_entity"] == "admin" && strings.Contains(fmt.Sprint(x.event["reason_admin"]), "disabled")
	}, "the disabled user's session")
	if code := s.do("PATCH", "/v1/users/"+userA, s.admin, map[string]bool{"disabled": false}, nil); code != 200 {
		t.Fatalf("enable: %d", code)
	}
	rc.waitFor(riscAccountEnabled, func(x receivedSET) bool { return x.subID["email"] == emailA }, "account-enabled")

	// Per stream: delivered, failed, queue depth and the oldest waiting.
	delivered := regexp.MustCompile(`(?m)^sessiond_ssf_sets_delivered_total\{stream_id="` + st.StreamID + `"\} (\d+)$`)
	testenv.Eventually(t, 15*time.Second, func() bool {
		resp, err := http.Get(s.api + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := delivered.FindSubmatch(body)
		if m == nil {
			return false
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n >= len(rc.received()) &&
			bytes.Contains(body, []byte(`sessiond_ssf_queue_depth{stream_id="`+st.StreamID+`"} 0`)) &&
			bytes.Contains(body, []byte(`sessiond_ssf_oldest_undelivered_seconds{stream_id="`+st.StreamID+`"} 0`))
	}, "the stream's metrics never told of its %d deliveries and its empty queue", len(rc.received()))
	rc.noProblems()
}

func TestSharedSignalsPushRetriesRejectionsAndRestarts(t *testing.T) {
	t.Parallel()
	s := ssfSystem(t)
	org := s.org("ssf retries")
	rc := newReceiver(t, s, org)
	var (
		mu   sync.Mutex
		down bool
	)
	rc.answer = func(n int) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case down:
			return http.StatusServiceUnavailable, ""
		case n <= 3:
			return http.StatusServiceUnavailable, ""
		case n == 4:
			return http.StatusBadRequest, `{"err":"invalid_request","description":"this receiver rejects its fourth request"}`
		}
		return 0, ""
	}
	st := rc.createPush(caepSessionRevoked)
	var sids []string
	for range 3 {
		_, _, p := s.signedIn(org)
		s.revokeSession(p.SessionID)
		sids = append(sids, p.SessionID)
	}
	// The first SET was refused three times (503: tried again) and then
	// rejected (400 with an RFC 8935 error: not tried again); the others
	// follow it, in order.
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == sids[2] }, "the third revocation")
	order := rc.revokedSessions()
	if !slices.Equal(order, sids[1:]) {
		t.Fatalf("received %v, want %v (the first rejected, the others in order)", order, sids[1:])
	}
	var lastError string
	testenv.Eventually(t, 10*time.Second, func() bool {
		err := s.pool().QueryRow(t.Context(), `SELECT COALESCE(last_error, '') FROM ssf_streams WHERE id = $1`, st.StreamID).Scan(&lastError)
		return err == nil && strings.Contains(lastError, "invalid_request")
	}, "the stream's last error never told of the rejection")

	// The receiver goes down; revocations go on; sessiond restarts; the
	// receiver comes back and gets every SET, in order.
	mu.Lock()
	down = true
	mu.Unlock()
	var later []string
	for range 3 {
		_, _, p := s.signedIn(org)
		s.revokeSession(p.SessionID)
		later = append(later, p.SessionID)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return rc.requests > 6
	}, "the transmitter never tried the downed receiver")
	s.stopAPI()
	s.startSessiond(nil)
	mu.Lock()
	down = false
	mu.Unlock()
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == later[2] }, "the revocations made while the receiver was down")
	order = rc.revokedSessions()
	if want := append(slices.Clone(sids[1:]), later...); !slices.Equal(order, want) {
		t.Fatalf("received %v, want %v", order, want)
	}
	rc.noProblems()
}

func TestSharedSignalsPollAsAReceiverWould(t *testing.T) {
	t.Parallel()
	s := ssfSystem(t)
	org := s.org("ssf poll")
	rc := newReceiver(t, s, org)
	var st streamConfig
	// No delivery named: poll (SSF 1.0 section 8.1.1.1).
	if code := rc.call("POST", rc.cfg.ConfigurationEndpoint, rc.token, map[string]any{"events_requested": []string{caepSessionRevoked}}, &st); code != 201 {
		t.Fatalf("create poll stream: %d", code)
	}
	if st.Delivery.Method != methodPoll || !strings.HasPrefix(st.Delivery.EndpointURL, rc.cfg.Issuer+"/") {
		t.Fatalf("poll stream delivery: %+v", st.Delivery)
	}
	var sids []string
	for range 3 {
		_, _, p := s.signedIn(org)
		s.revokeSession(p.SessionID)
		sids = append(sids, p.SessionID)
	}
	var sets map[string]string
	testenv.Eventually(t, 20*time.Second, func() bool {
		sets, _ = rc.poll(st, map[string]any{"returnImmediately": true})
		return len(sets) == 3
	}, "three SETs never waited to be polled")
	got := map[string]string{}
	for jti, raw := range sets {
		x, bad := rc.check(raw, st.StreamID)
		if bad != "" || x.jti != jti || x.typ != caepSessionRevoked {
			t.Fatalf("polled SET %s: %s (%+v)", jti, bad, x)
		}
		got[subjectSession(x)] = jti
	}
	for _, sid := range sids {
		if got[sid] == "" {
			t.Fatalf("no SET for session %s in %v", sid, got)
		}
	}
	// Not acknowledged, they come again; maxEvents bounds a poll.
	if again, more := rc.poll(st, map[string]any{"returnImmediately": true, "maxEvents": 1}); len(again) != 1 || !more {
		t.Fatalf("maxEvents 1: %d SETs, moreAvailable %v", len(again), more)
	}
	// Two acknowledged, one reported invalid: none left.
	ack := []string{got[sids[0]], got[sids[1]]}
	errs := map[string]any{got[sids[2]]: map[string]string{"err": "invalid_request", "description": "the test says so"}}
	if left, more := rc.poll(st, map[string]any{"ack": ack, "setErrs": errs, "returnImmediately": true}); len(left) != 0 || more {
		t.Fatalf("after ack and setErrs: %d SETs left, moreAvailable %v", len(left), more)
	}
	// A long poll waits for the next SET and returns it when it comes.
	type result struct {
		sets map[string]string
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		sets, _ := rc.poll(st, map[string]any{})
		done <- result{sets, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond) // the poll is waiting; the revocation comes after it
	_, _, p := s.signedIn(org)
	s.revokeSession(p.SessionID)
	select {
	case r := <-done:
		if len(r.sets) != 1 {
			t.Fatalf("the long poll returned %d SETs after %v", len(r.sets), r.took)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("the long poll never returned")
	}
	// A poll's answer holds the SETs in the order they were made.
	var ordered []string
	for range 4 {
		_, _, p := s.signedIn(org)
		s.revokeSession(p.SessionID)
		ordered = append(ordered, p.SessionID)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		left, _ := rc.poll(st, map[string]any{"returnImmediately": true})
		return len(left) == 5 // the long poll's, unacknowledged, and four
	}, "the four SETs never waited to be polled")
	var order []string
	for _, raw := range rc.pollInOrder(st, map[string]any{"returnImmediately": true}) {
		x, bad := rc.check(raw, st.StreamID)
		if bad != "" {
			t.Fatal(bad)
		}
		order = append(order, subjectSession(x))
	}
	if want := append([]string{p.SessionID}, ordered...); !slices.Equal(order, want) {
		t.Fatalf("polled in the order %v, want %v", order, want)
	}
	// Turned into a push stream, it pushes what waits to be polled first,
	// in order: nothing queued is lost.
	if code := rc.call("PATCH", rc.cfg.ConfigurationEndpoint, rc.token, map[string]any{"stream_id": st.StreamID,
		"delivery": map[string]string{"method": methodPush, "endpoint_url": rc.push.URL + "/events", "authorization_header": rc.pushToken}}, nil); code != 200 {
		t.Fatalf("poll to push: %d", code)
	}
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == ordered[3] }, "the queued SETs, pushed")
	pushed := rc.revokedSessions()
	if want := append([]string{p.SessionID}, ordered...); !slices.Equal(pushed, want) {
		t.Fatalf("pushed %v, want %v", pushed, want)
	}
	rc.noProblems()
}

func TestSharedSignalsSubjectsAndErasure(t *testing.T) {
	t.Parallel()
	s := ssfSystem(t)
	org := s.org("ssf subjects")
	rc := newReceiver(t, s, org)
	st := rc.createPush() // every event type
	if len(st.EventsDelivered) != len(st.EventsSupported) {
		t.Fatalf("a stream that requests nothing gets %v of %v", st.EventsDelivered, st.EventsSupported)
	}
	quietID, quietEmail, quiet := s.signedIn(org)
	_, _, loud := s.signedIn(org)
	// Removed: the quiet user's events are left out; the others' are not.
	if code := rc.call("POST", rc.cfg.RemoveSubjectEndpoint, rc.token, map[string]any{"stream_id": st.StreamID,
		"subject": map[string]string{"format": "email", "email": strings.ToUpper(quietEmail)}}, nil); code != 204 {
		t.Fatalf("remove subject: %d", code)
	}
	s.revokeSession(quiet.SessionID)
	s.revokeSession(loud.SessionID)
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == loud.SessionID }, "the other user's revocation")
	if slices.Contains(rc.revokedSessions(), quiet.SessionID) {
		t.Fatalf("a removed subject's revocation was delivered")
	}
	// Added back (by iss_sub): delivered again.
	if code := rc.call("POST", rc.cfg.AddSubjectEndpoint, rc.token, map[string]any{"stream_id": st.StreamID,
		"subject": map[string]string{"format": "iss_sub", "iss": rc.cfg.Issuer, "sub": quietID}, "verified": true}, nil); code != 200 {
		t.Fatalf("add subject: %d", code)
	}
	again := s.login(quietEmail, "password-1")
	s.revokeSession(again.SessionID)
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == again.SessionID }, "the added-back user's revocation")

	// Erasure: the sessions go (named by iss_sub, the email being erased)
	// and then account-purged, once the erasure has committed.
	last := s.login(quietEmail, "password-1")
	p := newPipeline(t, s.natsURL)
	req := p.request(quietID, org)
	p.confirmation(req, 20*time.Second)
	// The receiver knows the account by its email: the purge names it so
	// (telling each recipient of an erasure is part of it), and no SET
	// names it after the purge.
	purged := rc.waitFor(riscAccountPurged, nil, "account-purged")
	if purged.subID["format"] != "email" || purged.subID["email"] != quietEmail {
		t.Errorf("account-purged names %v", purged.subID)
	}
	gone := rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == last.SessionID }, "the erased user's session")
	if r := fmt.Sprint(gone.event["reason_admin"]); !strings.Contains(r, "erased") || gone.event["initiating_entity"] != "system" {
		t.Errorf("the erasure's revocation reads %v", gone.event)
	}
	// A second request for the same erasure purges nothing more.
	p.confirmation(p.request(quietID, org), 20*time.Second)
	_, _, other := s.signedIn(org)
	s.revokeSession(other.SessionID)
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == other.SessionID }, "a later revocation")
	n := 0
	for _, x := range rc.received() {
		if x.typ == riscAccountPurged {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d account-purged events for one erasure", n)
	}
	rc.noProblems()
}

func TestSharedSignalsBadInput(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 0) // production settings: push endpoints must be https
	org := s.org("ssf bad input")
	rc := newReceiver(t, s, org)
	c := rc.cfg
	count := func() int {
		var n int
		if err := s.pool().QueryRow(t.Context(), `SELECT count(*) FROM ssf_streams WHERE client_id = $1`, rc.clientID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	push := func(u string) map[string]any {
		return map[string]any{"delivery": map[string]string{"method": methodPush, "endpoint_url": u}}
	}
	for _, tc := range []struct {
		name string
		body any
	}{
		{"http push endpoint", push("http://receiver.example.com/events")},
		{"not a URL", push("receiver")},
		{"unknown delivery method", map[string]any{"delivery": map[string]string{"method": "urn:example:carrier-pigeon"}}},
		{"only unknown event types", map[string]any{"events_requested": []string{"urn:example:nothing"}}},
		{"empty events_requested", map[string]any{"events_requested": []string{}}},
		{"events_requested not strings", map[string]any{"events_requested": []int{1}}},
		{"not an object", []string{"stream"}},
		{"poll endpoint chosen by the receiver", map[string]any{"delivery": map[string]string{"method": methodPoll, "endpoint_url": "https://x.example/poll"}}},
	} {
		if code := rc.call("POST", c.ConfigurationEndpoint, rc.token, tc.body, nil); code != 400 {
			t.Errorf("%s: %d, want 400", tc.name, code)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("bad requests wrote %d streams", n)
	}
	var good streamConfig
	if code := rc.call("POST", c.ConfigurationEndpoint, rc.token, push("https://receiver.example.com/events"), &good); code != 201 {
		t.Fatalf("https push stream: %d", code)
	}

	// Authorisation (RFC 6750 section 3.1).
	req, _ := http.NewRequest("GET", c.ConfigurationEndpoint, nil)
	resp, err := rc.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if code := rc.call("GET", c.ConfigurationEndpoint+"?access_token="+rc.token, "", nil, nil); code != 401 {
		t.Errorf("a token in the query: %d, want 401 (the profile forbids it)", code)
	}
	reader := newReceiver(t, s, org, "ssf.read")
	if code := reader.call("POST", c.ConfigurationEndpoint, reader.token, map[string]any{}, nil); code != 403 {
		t.Errorf("ssf.read creating a stream: %d, want 403", code)
	}
	if code := reader.call("GET", c.ConfigurationEndpoint, reader.token, nil, nil); code != 200 {
		t.Errorf("ssf.read reading its streams: %d, want 200", code)
	}
	if code := reader.call("POST", c.Issuer+"/ssf/poll/"+good.StreamID, reader.token, map[string]any{}, nil); code != 403 {
		t.Errorf("ssf.read polling (its acknowledgements release SETs): %d, want 403", code)
	}
	introspector := newReceiver(t, s, org, "introspect")
	if code := introspector.call("GET", c.ConfigurationEndpoint, introspector.token, nil, nil); code != 403 {
		t.Errorf("a client without an ssf scope: %d, want 403", code)
	}

	// The push receiver's authorization header is its secret: never shown.
	var secretStream streamConfig
	if code := rc.call("POST", c.ConfigurationEndpoint, rc.token, map[string]any{"delivery": map[string]string{"method": methodPush,
		"endpoint_url": "https://receiver.example.com/caep", "authorization_header": "Bearer s3cr3t"}}, &secretStream); code != 201 {
		t.Fatalf("a push stream with a header: %d", code)
	}
	var listed []streamConfig
	rc.call("GET", c.ConfigurationEndpoint, rc.token, nil, &listed)
	if strings.Contains(fmt.Sprint(secretStream, listed), "s3cr3t") {
		t.Errorf("the authorization header is shown: %+v %+v", secretStream, listed)
	}
	if code := rc.call("DELETE", c.ConfigurationEndpoint+"?stream_id="+secretStream.StreamID, rc.token, nil, nil); code != 204 {
		t.Errorf("delete: %d", code)
	}
	for _, u := range []string{c.ConfigurationEndpoint + "?stream_id=", c.StatusEndpoint} {
		if code := rc.call("GET", u, rc.token, nil, nil); code != 400 {
			t.Errorf("GET %s without a stream_id: %d, want 400", u, code)
		}
	}

	// Streams that are not the client's, or do not exist: 404 everywhere.
	other := newReceiver(t, s, org)
	for _, id := range []string{good.StreamID, "00000000-0000-4000-8000-000000000000", "not-a-stream"} {
		for _, call := range []struct {
			method, url string
			body        any
		}{
			{"GET", c.ConfigurationEndpoint + "?stream_id=" + id, nil},
			{"PATCH", c.ConfigurationEndpoint, map[string]any{"stream_id": id, "description": "x"}},
			{"DELETE", c.ConfigurationEndpoint + "?stream_id=" + id, nil},
			{"GET", c.StatusEndpoint + "?stream_id=" + id, nil},
			{"POST", c.StatusEndpoint, map[string]any{"stream_id": id, "status": "paused"}},
			{"POST", c.VerificationEndpoint, map[string]any{"stream_id": id}},
			{"POST", c.AddSubjectEndpoint, map[string]any{"stream_id": id, "subject": map[string]string{"format": "opaque", "id": "x"}}},
			{"POST", c.Issuer + "/ssf/poll/" + id, map[string]any{}},
		} {
			if code := other.call(call.method, call.url, other.token, call.body, nil); code != 404 {
				t.Errorf("%s %s as another client: %d, want 404", call.method, call.url, code)
			}
		}
	}

	// Updates: transmitter-supplied fields must match; aud never changes.
	for name, body := range map[string]map[string]any{
		"aud":                       {"stream_id": good.StreamID, "aud": "someone-else"},
		"iss":                       {"stream_id": good.StreamID, "iss": "https://evil.example"},
		"events_delivered":          {"stream_id": good.StreamID, "events_delivered": []string{ssfVerification}},
		"min_verification_interval": {"stream_id": good.StreamID, "min_verification_interval": 0},
		"no stream_id":              {"description": "x"},
		"bad status":                {"stream_id": good.StreamID, "delivery": map[string]string{"method": methodPush, "endpoint_url": "ftp://x"}},
	} {
		if code := rc.call("PATCH", c.ConfigurationEndpoint, rc.token, body, nil); code != 400 {
			t.Errorf("PATCH changing %s: %d, want 400", name, code)
		}
	}
	if code := rc.call("PUT", c.ConfigurationEndpoint, rc.token, map[string]any{"stream_id": good.StreamID}, nil); code != 400 {
		t.Errorf("PUT without delivery: %d, want 400", code)
	}
	var patched streamConfig
	if code := rc.call("PATCH", c.ConfigurationEndpoint, rc.token, map[string]any{"stream_id": good.StreamID, "description": "renamed",
		"aud": good.Aud, "iss": good.Iss}, &patched); code != 200 || patched.Description != "renamed" || patched.Delivery.EndpointURL != good.Delivery.EndpointURL {
		t.Errorf("PATCH description: %d %+v", code, patched)
	}
	var replaced streamConfig
	if code := rc.call("PUT", c.ConfigurationEndpoint, rc.token, map[string]any{"stream_id": good.StreamID,
		"delivery": map[string]string{"method": methodPoll}}, &replaced); code != 200 || replaced.Description != "" || replaced.Delivery.Method != methodPoll {
		t.Errorf("PUT to poll: %d %+v (a PUT leaves out what it does not name)", code, replaced)
	}

	// Subjects, statuses and verification that are malformed.
	for name, subject := range map[string]any{
		"no format":        map[string]string{"email": "a@example.com"},
		"unknown format":   map[string]string{"format": "phone_number", "phone_number": "+12065550100"},
		"bad email":        map[string]string{"format": "email", "email": "not an address"},
		"iss_sub sans sub": map[string]string{"format": "iss_sub", "iss": c.Issuer},
		"complex unknown":  map[string]any{"format": "complex", "printer": map[string]string{"format": "opaque", "id": "x"}},
		"not an object":    "alice@example.com",
	} {
		if code := rc.call("POST", c.AddSubjectEndpoint, rc.token, map[string]any{"stream_id": good.StreamID, "subject": subject}, nil); code != 400 {
			t.Errorf("add subject, %s: %d, want 400", name, code)
		}
	}
	if code := rc.call("POST", c.StatusEndpoint, rc.token, map[string]any{"stream_id": good.StreamID, "status": "sleeping"}, nil); code != 400 {
		t.Errorf("status sleeping: %d, want 400", code)
	}
	if code := rc.call("POST", c.VerificationEndpoint, rc.token, map[string]any{"stream_id": good.StreamID}, nil); code != 204 {
		t.Errorf("verification: %d", code)
	}
	if code := rc.call("POST", c.VerificationEndpoint, rc.token, map[string]any{"stream_id": good.StreamID}, nil); code != 429 {
		t.Errorf("a second verification within min_verification_interval: %d, want 429", code)
	}
	var subjects int
	if err := s.pool().QueryRow(t.Context(), `SELECT count(*) FROM ssf_subjects`).Scan(&subjects); err != nil || subjects != 0 {
		t.Errorf("malformed subjects wrote %d rows (%v)", subjects, err)
	}
	if code := rc.call("DELETE", c.ConfigurationEndpoint+"?stream_id="+good.StreamID, rc.token, nil, nil); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if n := count(); n != 0 {
		t.Errorf("%d streams left after the delete", n)
	}
}

func TestSharedSignalsPauseAReceiverThatFailsTooLong(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 0, systemOptions{env: map[string]string{"SSF_ALLOW_HTTP": "true", "SSF_ALLOW_PRIVATE_NETWORKS": "true", "SSF_PAUSE_AFTER": "2s"}})
	org := s.org("ssf pause")
	rc := newReceiver(t, s, org)
	var (
		mu   sync.Mutex
		down = true
	)
	rc.answer = func(int) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusBadGateway, ""
		}
		return 0, ""
	}
	st := rc.createPush(caepSessionRevoked)
	var sids []string
	for range 2 {
		_, _, p := s.signedIn(org)
		s.revokeSession(p.SessionID)
		sids = append(sids, p.SessionID)
	}
	// Failing for longer than SSF_PAUSE_AFTER, the stream is paused by the
	// transmitter, and its status says why.
	var status struct{ StreamID, Status, Reason string }
	testenv.Eventually(t, 20*time.Second, func() bool {
		return rc.call("GET", rc.cfg.StatusEndpoint+"?stream_id="+st.StreamID, rc.token, nil, &status) == 200 && status.Status == "paused"
	}, "the failing stream was never paused")
	if !strings.Contains(status.Reason, "push delivery has failed since") {
		t.Errorf("paused with reason %q", status.Reason)
	}
	// The receiver comes back: it hears of the pause (stream-updated), and
	// nothing else until it enables the stream; then the held SETs come,
	// in order.
	mu.Lock()
	down = false
	mu.Unlock()
	upd := rc.waitFor(ssfStreamUpdated, nil, "the stream-updated event")
	if upd.event["status"] != "paused" || upd.subID["id"] != st.StreamID {
		t.Errorf("stream-updated: %v about %v", upd.event, upd.subID)
	}
	if got := rc.revokedSessions(); len(got) > 0 {
		t.Fatalf("a paused stream delivered %v", got)
	}
	if code := rc.call("POST", rc.cfg.StatusEndpoint, rc.token, map[string]string{"stream_id": st.StreamID, "status": "enabled"}, &status); code != 200 || status.Status != "enabled" {
		t.Fatalf("enable: %d %+v", code, status)
	}
	rc.waitFor(caepSessionRevoked, func(x receivedSET) bool { return subjectSession(x) == sids[1] }, "the held SETs")
	if order := rc.revokedSessions(); !slices.Equal(order, sids) {
		t.Fatalf("held SETs came as %v, want %v", order, sids)
	}
	rc.noProblems()
}

func TestPortalClientsAndStreams(t *testing.T) {
	s := ssfSystem(t)
	acme, globex := s.org("Acme SSF"), s.org("Globex SSF")
	s.member(acme, "org_admin", "olga@acme-ssf.test")
	var other struct{ ClientID string }
	if code := s.do("POST", "/v1/clients", s.admin, map[string]any{"name": "Globex SIEM", "org_id": globex, "scopes": []string{"ssf.read"}}, &other); code != 201 {
		t.Fatalf("globex client: %d", code)
	}

	b := newBrowser(t, s.api)
	if code := b.signIn("admin", "olga@acme-ssf.test", "password-1"); code != 200 {
		t.Fatalf("sign in: %d", code)
	}
	if code := b.open("/admin/clients"); code != 200 {
		t.Fatalf("clients page: %d", code)
	}
	assertLacks(t, b.text(), "Globex SIEM")
	b.do(chromedp.SendKeys(chromedp.CSS("#c-name"), "Okta ITP"))
	if code := b.navigate(chromedp.Click(chromedp.CSS(`form[action="/admin/clients"] button[type="submit"]`))); code != 201 {
		t.Fatalf("create client: %d", code)
	}
	assertContains(t, b.text(), "Client Okta ITP is created", "shown only this once", "ssf.manage", "ssf.read")
	id := result(b, chromedp.Text(chromedp.CSS("#new-client-id")))
	secret := result(b, chromedp.Text(chromedp.CSS("#new-client-secret")))

	// The receiver that holds those credentials creates its stream.
	rc := newReceiverFor(t, s, id, secret)
	st := rc.createPush(caepSessionRevoked)
	b.open("/admin/clients")
	assertContains(t, b.text(), "Okta ITP", "push to", rc.push.URL, "enabled", "none yet")

	// Send a verification: the receiver gets one, without state (the
	// transmitter's own).
	if code := b.navigate(chromedp.Click(chromedp.CSS(`form[action="/admin/streams/` + st.StreamID + `"] button[value="verify"]`))); code != 200 {
		t.Fatalf("verify: %d", code)
	}
	assertContains(t, b.text(), "A verification event is on its way")
	v := rc.waitFor(ssfVerification, nil, "the portal's verification")
	if _, ok := v.event["state"]; ok {
		t.Errorf("the transmitter's own verification carries state %v", v.event["state"])
	}
	// Pause, then enable: each is announced to the receiver.
	b.navigate(chromedp.Click(chromedp.CSS(`form[action="/admin/streams/` + st.StreamID + `"] button[value="paused"]`)))
	rc.waitFor(ssfStreamUpdated, func(x receivedSET) bool { return x.event["status"] == "paused" }, "stream-updated paused")
	assertContains(t, b.text(), "paused by an administrator")
	b.screenshot("admin-clients.png")
	// What an administrator stopped, the receiver cannot start again.
	if code := rc.call("POST", rc.cfg.StatusEndpoint, rc.token, map[string]string{"stream_id": st.StreamID, "status": "enabled"}, nil); code != 403 {
		t.Errorf("the receiver enabling a stream an administrator paused: %d, want 403", code)
	}
	b.navigate(chromedp.Click(chromedp.CSS(`form[action="/admin/streams/` + st.StreamID + `"] button[value="enabled"]`)))
	rc.waitFor(ssfStreamUpdated, func(x receivedSET) bool { return x.event["status"] == "enabled" }, "stream-updated enabled")

	// An org admin cannot act on another org's stream; deleting the client
	// ends its tokens and its stream.
	if code := b.confirm("/admin/clients/" + id + "/delete"); code != 200 {
		t.Fatalf("delete client: %d", code)
	}
	assertContains(t, b.text(), "The client is deleted")
	if code := rc.call("GET", rc.cfg.ConfigurationEndpoint, rc.token, nil, nil); code != 401 {
		t.Errorf("a deleted client's token: %d, want 401", code)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		var n int
		err := s.pool().QueryRow(t.Context(), `SELECT count(*) FROM ssf_streams WHERE id = $1`, st.StreamID).Scan(&n)
		return err == nil && n == 0
	}, "a deleted client's stream was left behind")
	rc.noProblems()
}
