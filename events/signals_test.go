package events

import (
	"errors"
	"testing"
	"time"
)

func TestSignalsRoundTripAndStayOnTheirSubject(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 123456000, time.UTC)
	org, user, sid, stream := "0b8e2a4e-8f7e-4c1e-9d2a-000000000001", "0b8e2a4e-8f7e-4c1e-9d2a-000000000002",
		"0b8e2a4e-8f7e-4c1e-9d2a-000000000003", "0b8e2a4e-8f7e-4c1e-9d2a-000000000004"
	for _, ev := range []Event{
		SessionsSignal{EventID: "0b8e2a4e-8f7e-4c1e-9d2a-00000000000a", Org: org, Reason: ReasonAdminRevoke, ActorID: user, Note: "left",
			RevokedAt: at, Sessions: []SignalSession{{SID: sid, Sub: user, Email: "a@example.com"}}},
		AccountSignal{EventID: "0b8e2a4e-8f7e-4c1e-9d2a-00000000000b", Org: org, Sub: user, Change: AccountPurged, At: at},
		StreamSignal{EventID: "0b8e2a4e-8f7e-4c1e-9d2a-00000000000c", StreamID: stream, Kind: StreamUpdated, Status: "paused", At: at},
	} {
		data, err := Encode(ev)
		if err != nil {
			t.Fatalf("%T: %v", ev, err)
		}
		got, err := DecodeSignal(ev.Subject(), data)
		if err != nil {
			t.Fatalf("%T: %v", ev, err)
		}
		if got.ID() != ev.ID() || got.Subject() != ev.Subject() {
			t.Errorf("%T came back as %+v", ev, got)
		}
		// The same payload on another org's (or stream's) subject is refused:
		// a consumer of one org's signals trusts its filter.
		other := "signals.v1.org.0b8e2a4e-8f7e-4c1e-9d2a-0000000000ff.account"
		if _, ok := ev.(StreamSignal); ok {
			other = StreamSignalsSubject("0b8e2a4e-8f7e-4c1e-9d2a-0000000000ff")
		} else if _, ok := ev.(SessionsSignal); ok {
			other = SessionsSignalSubject("0b8e2a4e-8f7e-4c1e-9d2a-0000000000ff")
		}
		if _, err := DecodeSignal(other, data); !errors.Is(err, ErrInvalid) {
			t.Errorf("%T on %s: %v, want ErrInvalid", ev, other, err)
		}
	}
	for _, bad := range []struct{ subject, data string }{
		{"signals.v1.elsewhere", `{}`},
		{SessionsSignalSubject(org), `{"event_id":"x"}`},
		{SessionsSignalSubject(org), `{"event_id":"0b8e2a4e-8f7e-4c1e-9d2a-00000000000a","org":"` + org + `","reason":"logout","revoked_at":"2026-12-01T09:00:00Z","sessions":[]}`},
		{"signals.v1.org." + org + ".account", `{"event_id":"0b8e2a4e-8f7e-4c1e-9d2a-00000000000b","org":"` + org + `","sub":"` + user + `","change":"deleted","at":"2026-12-01T09:00:00Z"}`},
		{StreamSignalsSubject(stream), `{"event_id":"0b8e2a4e-8f7e-4c1e-9d2a-00000000000c","stream_id":"` + stream + `","kind":"stream-updated","at":"2026-12-01T09:00:00Z"}`},
		{StreamSignalsSubject(stream), `not json`},
	} {
		if _, err := DecodeSignal(bad.subject, []byte(bad.data)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %s: %v, want ErrInvalid", bad.subject, bad.data, err)
		}
	}
}

// The revocation statement writes a SessionsSignal's JSON in SQL
// (sessions.sessionsSignal): its times carry an offset, its absent actor
// and note are null. Decode takes them.
func TestASessionsSignalWrittenBySQLDecodes(t *testing.T) {
	org := "0b8e2a4e-8f7e-4c1e-9d2a-000000000001"
	data := `{"event_id" : "0b8e2a4e-8f7e-4c1e-9d2a-00000000000a", "org" : "` + org + `", "reason" : "idle_timeout", "actor_id" : null, "note" : null,
		"revoked_at" : "2026-12-01T10:00:00.123456+01:00", "sessions" : [{"sid" : "0b8e2a4e-8f7e-4c1e-9d2a-000000000003", "sub" : "0b8e2a4e-8f7e-4c1e-9d2a-000000000002", "email" : null}]}`
	ev, err := DecodeSignal(SessionsSignalSubject(org), []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	s := ev.(SessionsSignal)
	if s.ActorID != "" || s.Note != "" || s.Sessions[0].Email != "" || !s.RevokedAt.Equal(time.Date(2026, 12, 1, 9, 0, 0, 123456000, time.UTC)) {
		t.Errorf("decoded %+v", s)
	}
}
