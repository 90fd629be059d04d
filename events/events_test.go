package events

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var (
	t0 = time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC)
	t1 = t0.Add(6 * time.Minute)
)

// samples are one event of each kind; their wire format is pinned by the
// golden files in testdata, which third parties build against.
var samples = map[string]Event{
	"session_revoked":  SessionRevoked{EventID: "0b6c1f7e-2a51-4c3e-9d0b-5f8e7a6b1c2d", SID: "5d1f8f0e-8f0e-4c2b-9b7a-0c1d2e3f4a5b", Sub: "a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00", Org: "c4d5e6f7-0819-4a2b-8c3d-4e5f60718293", Reason: ReasonAdminRevoke, RevokedAt: t0, ExpiresAt: t1},
	"token_revoked":    TokenRevoked{EventID: "1c7d2f8a-3b62-4d4f-8e1c-6a9f8b7c2d3e", JTI: "9e8d7c6b-5a49-4382-9172-6a5b4c3d2e1f", SID: "5d1f8f0e-8f0e-4c2b-9b7a-0c1d2e3f4a5b", Sub: "a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00", Org: "c4d5e6f7-0819-4a2b-8c3d-4e5f60718293", Reason: ReasonLogout, RevokedAt: t0, ExpiresAt: t1},
	"user_revoked":     UserRevoked{EventID: "2d8e3a9b-4c73-4e5a-9f2d-7b0a9c8d3e4f", Sub: "a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00", Org: "c4d5e6f7-0819-4a2b-8c3d-4e5f60718293", NotBefore: t0.Truncate(time.Second).Add(time.Second), Reason: ReasonUserDisabled, RevokedAt: t0, ExpiresAt: t1},
	"user_deleted":     UserDeleted{EventID: "3e9f4bac-5d84-4f6b-8a3e-8c1bad9e4f50", UserID: "a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00", OrgID: "c4d5e6f7-0819-4a2b-8c3d-4e5f60718293", RequestedAt: t0},
	"session_activity": SessionActivity{EventID: "5ab16dce-7fa6-4b8d-8c5a-ae3dcfb16172", Sessions: []SessionSeen{{SID: "5d1f8f0e-8f0e-4c2b-9b7a-0c1d2e3f4a5b", SeenAt: t0}}},
	"gateway_applied":  GatewayApplied{GatewayID: "6bc27edf-80b7-4c9e-9d6b-bf4ed0c27283", Name: "edge-fra-1", Version: "v2.0.0", StartedAt: t0, AppliedSeq: 41, StreamLastSeq: 42, State: GatewayCurrent, At: t1},
	"org_revoked":      OrgRevoked{EventID: "7cd38fe0-91c8-4daf-8e7c-c05fe1d38394", Org: "c4d5e6f7-0819-4a2b-8c3d-4e5f60718293", Role: "user", AuthBefore: t0, Reason: ReasonAdminBulkRevoke, RevokedAt: t0, ExpiresAt: t1},
	"session_created":  SessionCreated{EventID: "8de49f01-a2b7-4c6d-9e8f-d14e5f6a7b80", SessionID: "5d1f8f0e-8f0e-4c2b-9b7a-0c1d2e3f4a5b", UserID: "a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00", OrgID: "c4d5e6f7-0819-4a2b-8c3d-4e5f60718293", DeviceType: "ios", Client: "Safari on iOS", IP: ptr("203.0.113.24"), NewDevice: true, CreatedAt: t0},
	"user_erased":      UserErased{EventID: "4fa05cbd-6e95-4a7c-9b4f-9d2cbea05061", RequestEventID: "3e9f4bac-5d84-4f6b-8a3e-8c1bad9e4f50", UserID: "a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00", SessionsRevoked: 3, CompletedAt: t1},
}

func TestWireFormatGolden(t *testing.T) {
	for name, ev := range samples {
		t.Run(name, func(t *testing.T) {
			got, err := Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./events -update to create it)", err)
			}
			if string(got) != strings.TrimSpace(string(want)) {
				t.Fatalf("wire format changed (a breaking change for every consumer):\n got %s\nwant %s", got, want)
			}
			back, err := Decode(ev.Subject(), want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, ev) {
				t.Fatalf("round trip: %+v, want %+v", back, ev)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, _ := Encode(samples["session_revoked"])
	cases := []struct {
		name, subject, data, mention string
	}{
		{"unknown subject", "revocations.v1.tenant", string(valid), "unknown subject"},
		{"org rule with an unknown role", SubjectOrgRevoked, `{"event_id":"7cd38fe0-91c8-4daf-8e7c-c05fe1d38394","org":"c4d5e6f7-0819-4a2b-8c3d-4e5f60718293","role":"root","auth_before":"2026-11-27T10:00:00Z","reason":"admin_bulk_revoke","revoked_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:06:00Z"}`, "role"},
		{"org rule without auth_before", SubjectOrgRevoked, `{"event_id":"7cd38fe0-91c8-4daf-8e7c-c05fe1d38394","org":"c4d5e6f7-0819-4a2b-8c3d-4e5f60718293","role":"","reason":"admin_bulk_revoke","revoked_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:06:00Z"}`, "auth_before"},
		{"unknown version", "revocations.v2.session", string(valid), "unknown subject"},
		{"not JSON", SubjectSessionRevoked, "nope", "invalid"},
		{"array", SubjectSessionRevoked, "[]", "invalid"},
		{"null", SubjectSessionRevoked, "null", "event_id"},
		{"empty object", SubjectSessionRevoked, "{}", "event_id"},
		{"missing sid", SubjectSessionRevoked, strings.Replace(string(valid), `"sid":"5d1f8f0e-8f0e-4c2b-9b7a-0c1d2e3f4a5b",`, "", 1), "sid"},
		{"no reason", SubjectSessionRevoked, strings.Replace(string(valid), `"admin_revoke"`, `""`, 1), "reason"},
		{"bad time", SubjectSessionRevoked, strings.Replace(string(valid), `"2026-11-27T10:06:00.123456Z"`, `"tomorrow"`, 1), "invalid"},
		{"uuid not a uuid", SubjectUserDeleted, `{"event_id":"x","user_id":"y","org_id":"z","requested_at":"2026-11-27T10:00:00Z"}`, "event_id must be a UUID"},
		{"negative count", SubjectUserErased, `{"event_id":"4fa05cbd-6e95-4a7c-9b4f-9d2cbea05061","request_event_id":"3e9f4bac-5d84-4f6b-8a3e-8c1bad9e4f50","user_id":"a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00","sessions_revoked":-1,"completed_at":"2026-11-27T10:00:00Z"}`, "negative"},
		{"user revoked without not_before", SubjectUserRevoked, `{"event_id":"2d8e3a9b-4c73-4e5a-9f2d-7b0a9c8d3e4f","sub":"a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00","org":"c4d5e6f7-0819-4a2b-8c3d-4e5f60718293","reason":"erasure","revoked_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:06:00Z"}`, "not_before"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.subject, []byte(c.data))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("error %q does not wrap ErrInvalid or mention %q", err, c.mention)
			}
		})
	}
}

func TestDecodeIgnoresAddedFields(t *testing.T) {
	valid, _ := Encode(samples["user_deleted"])
	withExtra := strings.Replace(string(valid), "{", `{"trace_id":"abc",`, 1)
	if _, err := Decode(SubjectUserDeleted, []byte(withExtra)); err != nil {
		t.Fatalf("a producer's added field broke decoding: %v", err)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	if _, err := Encode(SessionRevoked{EventID: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Encode of an invalid event: %v", err)
	}
}

func TestRevocationsStreamAge(t *testing.T) {
	s := RevocationsStream(5 * time.Minute)
	if s.MaxAge != 6*time.Minute || s.Name != "REVOCATIONS" || s.Subjects[0] != "revocations.v1.>" {
		t.Fatalf("%+v", s)
	}
}

// FuzzDecode: no input panics; whatever decodes re-encodes to something that
// decodes to the same event.
func FuzzDecode(f *testing.F) {
	for _, ev := range samples {
		b, _ := Encode(ev)
		f.Add(ev.Subject(), b)
	}
	f.Add(SubjectSessionRevoked, []byte(`{"event_id":1}`))
	f.Add("x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		ev, err := Decode(subject, data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		b, err := Encode(ev)
		if r, ok := ev.(interface{ reasonOf() Reason }); ok && !r.reasonOf().Valid() {
			// A consumer takes a reason it does not know; this producer
			// never sends one.
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("encoded reason %q, which is not the contract's: %v", r.reasonOf(), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		again, err := Decode(subject, b)
		if err != nil || !reflect.DeepEqual(normal(again), normal(ev)) {
			t.Fatalf("round trip: %+v vs %+v (%v)", again, ev, err)
		}
	})
}

// normal strips monotonic and location details that JSON does not keep.
func normal(e Event) string {
	b, _ := Encode(e)
	return string(b)
}

// TestReasonsAreInformational: the contract makes reason informational, so
// that reasons can be added: a consumer applies an event whose reason it
// does not know, while this producer sends only the contract's reasons.
func TestReasonsAreInformational(t *testing.T) {
	t.Parallel()
	ev := SessionRevoked{EventID: "7cd38fe0-91c8-4daf-8e7c-c05fe1d38394", SID: "5d1f8f0e-8f0e-4c2b-9b7a-0c1d2e3f4a5b", Sub: "a3e6c2d1-1b2c-4d3e-8f4a-5b6c7d8e9f00",
		Org: "c4d5e6f7-0819-4a2b-8c3d-4e5f60718293", Reason: ReasonReplaced, RevokedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Minute).UTC()}
	data, err := Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	later := strings.Replace(string(data), `"replaced"`, `"a_reason_from_the_future"`, 1)
	got, err := Decode(SubjectSessionRevoked, []byte(later))
	if err != nil {
		t.Fatalf("an unknown reason is refused: %v", err)
	}
	if got.(SessionRevoked).SID != ev.SID {
		t.Fatalf("decoded %+v", got)
	}
	ev.Reason = "a_reason_from_the_future"
	if _, err := Encode(ev); err == nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("the producer sent a reason that is not the contract's: %v", err)
	}
}

func ptr(s string) *string { return &s }
