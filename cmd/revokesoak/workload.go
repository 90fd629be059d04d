package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
)

// userPassword is every soak user's password.
const userPassword = "soak-user-password"

// soak is the run: the system, its history, and what the clients share.
type soak struct {
	s   *system
	rec *recorder

	adminMu sync.Mutex
	admin   string // a global admin's access token
	adminRT string

	orgs []string

	staleness, propagation time.Duration
}

// answer is one HTTP call's outcome.
type answer struct {
	status int
	err    string
	body   []byte
	header http.Header
}

// call makes a JSON request to base+path.
func (k *soak) call(ctx context.Context, base, method, path, token string, body any) answer {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return answer{err: err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := k.s.client.Do(req)
	if err != nil {
		return answer{err: shortErr(err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return answer{status: resp.StatusCode, body: b, header: resp.Header}
}

// shortErr keeps the part of a transport error that says what happened.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i < 80 {
		return s[i+2:]
	}
	return s
}

// claims reads an access token's jti and exp (the soak issued nothing it
// must verify: sessiond signed it).
func claims(tok string) (jti string, exp time.Time) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", time.Time{}
	}
	var c struct {
		JTI string  `json:"jti"`
		Exp float64 `json:"exp"`
	}
	_ = json.Unmarshal(b, &c)
	return c.JTI, time.Unix(0, int64(c.Exp*1e9))
}

type pair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
}

// sessiond picks a replica for a call (a load balancer's choice).
func (k *soak) sessiond(rng *rand.Rand) *service { return k.s.sessiond[rng.IntN(len(k.s.sessiond))] }

// adminToken is the global admin's access token, refreshed before it
// expires.
func (k *soak) adminToken() string {
	k.adminMu.Lock()
	defer k.adminMu.Unlock()
	return k.admin
}

// adminLogin signs the global admin in, on any replica that answers.
func (k *soak) adminLogin(ctx context.Context) error {
	var last answer
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, sd := range k.s.sessiond {
			last = k.call(ctx, sd.base, "POST", "/v1/auth/login", "", map[string]any{"email": adminEmail, "password": adminPassword, "device": map[string]string{"type": "other", "name": "soak"}})
			var p pair
			if last.status == 200 && json.Unmarshal(last.body, &p) == nil {
				k.adminMu.Lock()
				k.admin, k.adminRT = p.AccessToken, p.RefreshToken
				k.adminMu.Unlock()
				return nil
			}
		}
	}
	return fmt.Errorf("admin login: %d %s", last.status, last.err)
}

// keepAdmin refreshes the admin's tokens every minute until ctx ends (a
// minute's worth of faults cannot outlast the five-minute access token).
func (k *soak) keepAdmin(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
		for _, sd := range k.s.sessiond {
			k.adminMu.Lock()
			rt := k.adminRT
			k.adminMu.Unlock()
			a := k.call(ctx, sd.base, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": rt})
			var p pair
			if a.status == 200 && json.Unmarshal(a.body, &p) == nil {
				k.adminMu.Lock()
				k.admin, k.adminRT = p.AccessToken, p.RefreshToken
				k.adminMu.Unlock()
				break
			}
			if a.status == 401 { // rotated by an unanswered try: sign in again
				_ = k.adminLogin(ctx)
				break
			}
		}
	}
}

// user is a soak user, owned by one client.
type user struct {
	id, org, email string
	erased         bool
}

// sess is a session a client holds.
type sess struct {
	id      string
	u       *user
	tokens  []string // its access tokens, newest last (older ones live until they expire)
	refresh string
	rotated []rotated // its refresh tokens that were rotated
}

type rotated struct {
	token string
	at    time.Time
}

// client is one simulated user population: its own users, its own
// sessions, its own random choices.
type client struct {
	k     *soak
	id    int
	rng   *rand.Rand
	users []*user
	live  []*sess
	dead  []string // access tokens of ended sessions, the newest at the end
	// erased are the users whose erasure JetStream acknowledged.
	erased []*user
	// unavailable: the last answer was a 5xx or none; back off.
	unavailable bool
}

// newUser creates a user in one of the soak's orgs (recorded).
func (c *client) newUser(ctx context.Context) (*user, error) {
	org := c.k.orgs[c.rng.IntN(len(c.k.orgs))]
	email := fmt.Sprintf("soak-%s@example.com", uuid.NewString()[:13])
	sd := c.k.sessiond(c.rng)
	op := Op{Kind: opCreateUser, Client: c.id, Start: time.Now(), Target: sd.name}
	a := c.call(ctx, sd.base, "POST", "/v1/users", c.k.adminToken(), map[string]string{"org_id": org, "email": email, "password": userPassword, "role": "user"})
	op.End, op.Status, op.Err = time.Now(), a.status, a.err
	var out struct {
		ID string `json:"id"`
	}
	if a.status == 201 {
		_ = json.Unmarshal(a.body, &out)
		op.User = out.ID
	}
	c.k.rec.add(op)
	if a.status != 201 {
		return nil, fmt.Errorf("create user: %d %s", a.status, a.err)
	}
	u := &user{id: out.ID, org: org, email: email}
	c.users = append(c.users, u)
	return u, nil
}

// run does operations until ctx ends.
func (c *client) run(ctx context.Context) {
	for ctx.Err() == nil {
		c.step(ctx)
	}
}

// step picks one operation by weight. After an answer that says the
// service is unavailable (or none), the client backs off a little, as a
// real one does, rather than spin.
func (c *client) step(ctx context.Context) {
	// Three users at all times: one erased, or not created while sessiond
	// was down, is replaced first.
	if len(c.users) < 3 {
		if _, err := c.newUser(ctx); err != nil {
			c.unavailable = true
		}
		c.backOff()
		return
	}
	// Per thousand steps. A sign-in costs a hundred checks (argon2id), and
	// every ended session is replaced by one, so sessions end at a measured
	// pace: enough revocations of every kind, most of the time on checks.
	r := c.rng.IntN(1000)
	switch {
	case r < 5 || len(c.live) == 0:
		c.login(ctx)
	case r < 955:
		c.check(ctx)
	case r < 975:
		c.refresh(ctx)
	case r < 978:
		c.reuse(ctx)
	case r < 982:
		c.logout(ctx)
	case r < 986:
		c.revokeSelf(ctx)
	case r < 992:
		c.revokeAdmin(ctx)
	case r < 995:
		c.revokeUser(ctx, opRevokeUser)
	case r < 998:
		c.revokeUser(ctx, opRevokeBulk)
	default:
		c.erase(ctx)
	}
	c.backOff()
}

func (c *client) backOff() {
	if c.unavailable {
		c.unavailable = false
		time.Sleep(time.Duration(20+c.rng.IntN(80)) * time.Millisecond)
	}
}

// call is the soak's call, noting an unavailable answer.
func (c *client) call(ctx context.Context, base, method, path, token string, body any) answer {
	a := c.k.call(ctx, base, method, path, token, body)
	if unknownStatus(a) {
		c.unavailable = true
	}
	return a
}

func (c *client) pickLive() *sess { return c.live[c.rng.IntN(len(c.live))] }

// end moves a session's tokens to the dead ones (kept for checks: they must
// be refused).
func (c *client) end(s *sess) {
	for i, l := range c.live {
		if l == s {
			c.live = append(c.live[:i], c.live[i+1:]...)
			break
		}
	}
	c.dead = append(c.dead, s.tokens...)
	if len(c.dead) > 400 {
		c.dead = c.dead[len(c.dead)-400:]
	}
}

// endUser ends every session of u the client holds.
func (c *client) endUser(u *user) {
	for _, s := range append([]*sess(nil), c.live...) {
		if s.u == u {
			c.end(s)
		}
	}
}

func (c *client) login(ctx context.Context) {
	var alive []*user
	for _, u := range c.users {
		if !u.erased {
			alive = append(alive, u)
		}
	}
	if len(alive) == 0 || len(c.live) >= 3*len(alive) {
		c.check(ctx)
		return
	}
	u := alive[c.rng.IntN(len(alive))]
	sd := c.k.sessiond(c.rng)
	op := Op{Kind: opLogin, Client: c.id, Start: time.Now(), Target: sd.name, User: u.id}
	a := c.call(ctx, sd.base, "POST", "/v1/auth/login", "", map[string]any{"email": u.email, "password": userPassword, "device": map[string]string{"type": "web", "name": "soak"}})
	op.End, op.Status, op.Err = time.Now(), a.status, a.err
	var p pair
	if a.status == 200 && json.Unmarshal(a.body, &p) == nil {
		op.Session = p.SessionID
		op.Token, op.Exp = claims(p.AccessToken)
		c.live = append(c.live, &sess{id: p.SessionID, u: u, tokens: []string{p.AccessToken}, refresh: p.RefreshToken})
	}
	c.k.rec.add(op)
}

func (c *client) check(ctx context.Context) {
	var tok string
	if len(c.dead) > 0 && c.rng.IntN(10) < 3 || len(c.live) == 0 {
		if len(c.dead) == 0 {
			return
		}
		// Mostly the recently ended: the window where propagation shows.
		i := len(c.dead) - 1 - min(len(c.dead)-1, int(c.rng.ExpFloat64()*20))
		tok = c.dead[i]
	} else {
		s := c.pickLive()
		tok = s.tokens[c.rng.IntN(len(s.tokens))]
	}
	g := c.k.s.gateways[c.rng.IntN(len(c.k.s.gateways))]
	op := Op{Kind: opCheck, Client: c.id, Start: time.Now(), Target: g.name}
	op.Token, _ = claims(tok)
	a := c.call(ctx, g.base, "GET", "/v1/check", tok, nil)
	op.End, op.Status, op.Err = time.Now(), a.status, a.err
	c.k.rec.add(op)
}

func (c *client) refresh(ctx context.Context) {
	s := c.pickLive()
	sd := c.k.sessiond(c.rng)
	op := Op{Kind: opRefresh, Client: c.id, Start: time.Now(), Target: sd.name, Session: s.id, User: s.u.id}
	a := c.call(ctx, sd.base, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": s.refresh})
	op.End, op.Status, op.Err = time.Now(), a.status, a.err
	var p pair
	switch {
	case a.status == 200 && json.Unmarshal(a.body, &p) == nil:
		op.Token, op.Exp = claims(p.AccessToken)
		s.rotated = append(s.rotated, rotated{token: s.refresh, at: op.End})
		s.refresh = p.RefreshToken
		s.tokens = append(s.tokens, p.AccessToken)
		if len(s.tokens) > 3 {
			s.tokens = s.tokens[len(s.tokens)-3:]
		}
	case a.status == 401:
		c.end(s)
	}
	c.k.rec.add(op)
}

// reuse presents a refresh token rotated more than the grace (1 s) ago: it
// must be refused, and the session revoked.
func (c *client) reuse(ctx context.Context) {
	s := c.pickLive()
	if len(s.rotated) == 0 || time.Since(s.rotated[0].at) < 2*time.Second {
		c.check(ctx)
		return
	}
	sd := c.k.sessiond(c.rng)
	op := Op{Kind: opReuse, Client: c.id, Start: time.Now(), Target: sd.name, Session: s.id, User: s.u.id}
	a := c.call(ctx, sd.base, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": s.rotated[0].token})
	op.End, op.Status, op.Err = time.Now(), a.status, a.err
	c.k.rec.add(op)
	c.end(s) // revoked, or unknown: either way not used as live again
}

func (c *client) logout(ctx context.Context) {
	s := c.pickLive()
	c.revokeOne(ctx, opLogout, s, "POST", "/v1/auth/logout", s.tokens[len(s.tokens)-1], http.StatusUnauthorized)
}

// revokeSelf: a user ends one of their sessions from another one (or from
// itself when it is the only one).
func (c *client) revokeSelf(ctx context.Context) {
	s := c.pickLive()
	from := s
	for _, o := range c.live {
		if o.u == s.u && o != s {
			from = o
			break
		}
	}
	c.revokeOne(ctx, opRevokeSelf, s, "DELETE", "/v1/me/sessions/"+s.id, from.tokens[len(from.tokens)-1], http.StatusNotFound)
}

func (c *client) revokeAdmin(ctx context.Context) {
	s := c.pickLive()
	c.revokeOne(ctx, opRevokeAdmin, s, "DELETE", "/v1/sessions/"+s.id, c.k.adminToken(), http.StatusNotFound)
}

// revokeOne ends session s with one call and records it; the client gives
// the session up after a 2xx, no answer, or gone (the status that says it
// had ended already).
func (c *client) revokeOne(ctx context.Context, kind string, s *sess, method, path, token string, gone int) {
	sd := c.k.sessiond(c.rng)
	op := Op{Kind: kind, Client: c.id, Start: time.Now(), Target: sd.name, Session: s.id, User: s.u.id}
	a := c.call(ctx, sd.base, method, path, token, nil)
	op.End, op.Status, op.Err = time.Now(), a.status, a.err
	c.k.rec.add(op)
	if a.status/100 == 2 || unknownStatus(a) || a.status == gone {
		c.end(s)
	}
}

// revokeUser ends every session of a user: DELETE /v1/users/{id}/sessions,
// or a bulk revocation filtered by the user.
func (c *client) revokeUser(ctx context.Context, kind string) {
	u := c.pickLive().u
	sd := c.k.sessiond(c.rng)
	op := Op{Kind: kind, Client: c.id, Start: time.Now(), Target: sd.name, User: u.id}
	var a answer
	if kind == opRevokeUser {
		a = c.call(ctx, sd.base, "DELETE", "/v1/users/"+u.id+"/sessions", c.k.adminToken(), nil)
	} else {
		a = c.call(ctx, sd.base, "POST", "/v1/revocations", c.k.adminToken(), map[string]string{"org_id": u.org, "user_id": u.id})
	}
	op.End, op.Status, op.Err = time.Now(), a.status, a.err
	c.k.rec.add(op)
	if op.Status/100 == 2 || unknownStatus(a) {
		c.endUser(u)
	}
}

// erase publishes the GDPR pipeline's request for a user, as the pipeline
// does (retrying with the same event id until JetStream acknowledges it),
// and replaces the user.
func (c *client) erase(ctx context.Context) {
	if len(c.users) < 2 {
		c.check(ctx)
		return
	}
	u := c.pickLive().u
	ev := events.UserDeleted{EventID: uuid.NewString(), UserID: u.id, OrgID: u.org, RequestedAt: time.Now().UTC()}
	data, _ := events.Encode(ev)
	op := Op{Kind: opErase, Client: c.id, Start: time.Now(), Target: "nats", User: u.id, Event: ev.EventID}
	for try := 0; try < 20 && ctx.Err() == nil; try++ {
		msg := nats.NewMsg(ev.Subject())
		msg.Data = data
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.k.s.js.PublishMsg(pctx, msg, jetstream.WithMsgID(ev.EventID))
		cancel()
		if err == nil {
			op.Status, op.Err = 200, ""
			break
		}
		op.Err = shortErr(err)
		time.Sleep(250 * time.Millisecond)
	}
	op.End = time.Now()
	c.k.rec.add(op)
	u.erased = true
	if op.Status == 200 {
		c.erased = append(c.erased, u)
	}
	c.endUser(u)
	for i, x := range c.users {
		if x == u {
			c.users = append(c.users[:i], c.users[i+1:]...)
			break
		}
	}
}

func unknownStatus(a answer) bool { return a.status == 0 || a.status >= 500 }

// observeErasures records every sessions.v1.user.erased sessiond publishes.
//
// It starts after the stream's last message, by sequence: an ordered
// consumer that starts at "new" and is reset (a NATS node killed) before
// its first message starts at "new" again, and misses what was published
// in between (the first 30-minute run's 20 unconfirmed erasures were
// confirmations this observer missed: they were in the outbox, sent).
func (k *soak) observeErasures(ctx context.Context) (func(), error) {
	st, err := k.s.js.Stream(ctx, events.StreamSessions)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	cons, err := k.s.js.OrderedConsumer(ctx, events.StreamSessions, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectUserErased}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		ev, err := events.Decode(m.Subject(), m.Data())
		if e, ok := ev.(events.UserErased); err == nil && ok {
			k.rec.add(Op{Kind: opErased, Start: now, End: now, Event: e.RequestEventID, User: e.UserID, N: e.SessionsRevoked})
		}
	})
	if err != nil {
		return nil, err
	}
	return cc.Stop, nil
}
