package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/services/sessions/erasure"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
)

// pipeline plays the GDPR erasure pipeline: it publishes user-deleted
// requests and reads the confirmations.
type pipeline struct {
	t    testing.TB
	nc   *nats.Conn
	js   jetstream.JetStream
	msgs chan *nats.Msg
}

func newPipeline(t testing.TB, url string) *pipeline {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	p := &pipeline{t: t, nc: nc, js: js, msgs: make(chan *nats.Msg, 64)}
	if _, err := nc.ChanSubscribe(events.SubjectUserErased, p.msgs); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	return p
}

func (p *pipeline) request(userID, orgID string) string {
	p.t.Helper()
	ev := events.UserDeleted{EventID: uuid.NewString(), UserID: userID, OrgID: orgID, RequestedAt: time.Now().UTC()}
	data, _ := events.Encode(ev)
	p.publishRaw(ev.Subject(), data, ev.EventID)
	return ev.EventID
}

func (p *pipeline) publishRaw(subject string, data []byte, id string) {
	p.t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = data
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pipeline) confirmation(requestID string, within time.Duration) events.UserErased {
	p.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-p.msgs:
			ev, err := events.Decode(m.Subject, m.Data)
			if err != nil {
				p.t.Fatalf("bad confirmation: %v", err)
			}
			if c := ev.(events.UserErased); c.RequestEventID == requestID {
				return c
			}
		case <-deadline:
			p.t.Fatalf("no confirmation for request %s within %s", requestID, within)
		}
	}
}

func TestErasurePipeline(t *testing.T) {
	s := newSystem(t, 2)
	p := newPipeline(t, s.nats.URL())
	orgUser := func() (string, string, pair) {
		id, tok := s.user()
		var u struct {
			Sessions []struct {
				OrgID string `json:"org_id"`
			}
		}
		s.do("GET", "/v1/me/sessions", tok.AccessToken, nil, &u)
		return id, u.Sessions[0].OrgID, tok
	}

	t.Run("erasure end to end, refused at every gateway", func(t *testing.T) {
		id, org, tok := orgUser()
		second := s.login(s.emailOf(tok), "password-1")
		req := p.request(id, org)
		c := p.confirmation(req, 15*time.Second)
		if c.UserID != id || c.SessionsRevoked != 2 {
			t.Fatalf("confirmation %+v", c)
		}
		s.waitRefusedEverywhere(tok.AccessToken)
		s.waitRefusedEverywhere(second.AccessToken)
		t.Run("a repeat is confirmed again", func(t *testing.T) {
			again := p.request(id, org)
			if c := p.confirmation(again, 15*time.Second); c.SessionsRevoked != 0 || c.UserID != id {
				t.Fatalf("repeat confirmation %+v", c)
			}
		})
	})

	t.Run("an unknown user is confirmed with zero sessions", func(t *testing.T) {
		req := p.request(uuid.NewString(), uuid.NewString())
		if c := p.confirmation(req, 15*time.Second); c.SessionsRevoked != 0 {
			t.Fatalf("confirmation %+v", c)
		}
	})

	t.Run("a malformed request is parked, not retried for ever", func(t *testing.T) {
		bad := `{"event_id":"` + uuid.NewString() + `","user_id":"not-a-uuid"}`
		p.publishRaw(events.SubjectUserDeleted, []byte(bad), uuid.NewString())
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cons, err := p.js.OrderedConsumer(ctx, events.StreamIdentity, jetstream.OrderedConsumerConfig{FilterSubjects: []string{erasure.DeadLetterSubject}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(15 * time.Second))
		if err != nil {
			t.Fatalf("nothing parked: %v", err)
		}
		if string(m.Data()) != bad || !strings.Contains(m.Headers().Get("Erasure-Error"), "user_id") {
			t.Fatalf("parked %q with error %q", m.Data(), m.Headers().Get("Erasure-Error"))
		}
		waitMetric(t, s.api, `sessiond_erasure_requests_total{result="parked"} 1`)
	})

	t.Run("sessiond stopped while the request arrives", func(t *testing.T) {
		id, org, tok := orgUser()
		s.stopAPI()
		req := p.request(id, org)
		s.startSessiond(nil)
		if c := p.confirmation(req, 20*time.Second); c.SessionsRevoked != 1 {
			t.Fatalf("confirmation %+v", c)
		}
		s.waitRefusedEverywhere(tok.AccessToken)
	})

	t.Run("a transaction that fails half-way is redelivered and completes", func(t *testing.T) {
		id, org, tok := orgUser()
		pool := s.pool()
		if _, err := pool.Exec(t.Context(), `
			CREATE OR REPLACE FUNCTION fail_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'injected failure'; END $$;
			CREATE TRIGGER fail_erasure BEFORE INSERT ON audit_log FOR EACH ROW
			WHEN (NEW.action = 'user_erased') EXECUTE FUNCTION fail_erasure();`); err != nil {
			t.Fatal(err)
		}
		req := p.request(id, org)
		waitMetric(t, s.api, `sessiond_erasure_requests_total{result="retried"}`)
		if !s.acceptedEverywhere(tok.AccessToken) {
			t.Fatal("the failed transaction left a revocation behind")
		}
		if _, err := pool.Exec(t.Context(), `DROP TRIGGER fail_erasure ON audit_log`); err != nil {
			t.Fatal(err)
		}
		if c := p.confirmation(req, 20*time.Second); c.SessionsRevoked != 1 {
			t.Fatalf("confirmation %+v", c)
		}
		s.waitRefusedEverywhere(tok.AccessToken)
	})
}

func waitMetric(t testing.TB, api, series string) {
	t.Helper()
	waitFor(t, func() bool {
		resp, err := http.Get(api + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), series)
	}, "metric "+series+" never appeared")
}
