package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessionguard/revoke/internal/testenv"
)

// receipt is GET /v1/revocations/{id}.
type receipt struct {
	ID          string     `json:"id"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	PublishedAt *time.Time `json:"published_at"`
	EnforcedAt  *time.Time `json:"enforced_at"`
	Gateways    struct {
		Expected int      `json:"expected"`
		Enforced int      `json:"enforced"`
		Pending  []string `json:"pending"`
		Departed []string `json:"departed"`
	} `json:"gateways"`
}

type fleetGateway struct {
	ID, Name, State string
	AppliedSeq      uint64 `json:"applied_seq"`
}

// revokeWaiting revokes session sid as the admin with Prefer: wait=wait
// and returns the answer's receipt headers.
func (s *system) revokeWaiting(sid string, wait int) http.Header {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, s.api+"/v1/sessions/"+sid, nil)
	req.Header.Set("Authorization", "Bearer "+s.admin)
	req.Header.Set("Prefer", "wait="+itoa(wait))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		s.t.Fatalf("revoke: %d", resp.StatusCode)
	}
	return resp.Header
}

func (s *system) receipt(id string) receipt {
	s.t.Helper()
	var r receipt
	if code := s.do("GET", "/v1/revocations/"+id, s.admin, nil, &r); code != 200 {
		s.t.Fatalf("GET /v1/revocations/%s: %d", id, code)
	}
	return r
}

func (s *system) fleet() []fleetGateway {
	s.t.Helper()
	var out struct{ Gateways []fleetGateway }
	if code := s.do("GET", "/v1/gateways", s.admin, nil, &out); code != 200 {
		s.t.Fatalf("GET /v1/gateways: %d", code)
	}
	return out.Gateways
}

// fleetID is the id of the gateway named name, waiting until it reports.
func (s *system) fleetID(name string) string {
	s.t.Helper()
	var id string
	testenv.Eventually(s.t, 10*time.Second, func() bool {
		for _, g := range s.fleet() {
			if g.Name == name {
				id = g.ID
				return true
			}
		}
		return false
	}, "gateway %s never reported", name)
	return id
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestReceiptsAreEnforcedAtEveryGateway: a revocation with Prefer: wait
// answers once every gateway has applied it; its receipt and the fleet say
// so.
func TestReceiptsAreEnforcedAtEveryGateway(t *testing.T) {
	t.Parallel()
	s := newSystem(t, 2)
	for _, g := range s.gateways {
		s.fleetID("gw-" + strings.TrimPrefix(g.control, "http://"))
	}
	_, p := s.user()
	h := s.revokeWaiting(p.SessionID, 5)
	id := h.Get("Revocation-Id")
	if id == "" || h.Get("Revocation-Status") != "enforced" || h.Get("Preference-Applied") != "wait=5" {
		t.Fatalf("receipt headers %v", h)
	}
	// Enforced means refused: no gateway may accept the token any more.
	for _, g := range s.gateways {
		if code := check(t, g, p.AccessToken); code != http.StatusUnauthorized {
			t.Fatalf("enforced, yet gateway %s answers %d", g.control, code)
		}
	}
	r := s.receipt(id)
	if r.Status != "enforced" || r.Gateways.Expected != 2 || r.Gateways.Enforced != 2 || len(r.Gateways.Pending) != 0 ||
		r.PublishedAt == nil || r.EnforcedAt == nil || r.PublishedAt.Before(r.CreatedAt) || r.EnforcedAt.Before(*r.PublishedAt) {
		t.Fatalf("receipt %+v", r)
	}
	for _, g := range s.fleet() {
		if g.State != "current" || g.AppliedSeq == 0 {
			t.Fatalf("fleet member %+v", g)
		}
	}
	// Another org's admin does not see it.
	var org struct{ ID string }
	s.do("POST", "/v1/orgs", s.admin, map[string]string{"name": "other"}, &org)
	s.do("POST", "/v1/users", s.admin, map[string]string{"org_id": org.ID, "email": "oa@other.example", "password": "password-1", "role": "org_admin"}, nil)
	other := s.login("oa@other.example", "password-1")
	if code := s.do("GET", "/v1/revocations/"+id, other.AccessToken, nil, nil); code != http.StatusNotFound {
		t.Fatalf("another org's admin reads the receipt: %d", code)
	}
	if code := s.do("GET", "/v1/gateways", other.AccessToken, nil, nil); code != http.StatusForbidden {
		t.Fatalf("an org admin reads the fleet: %d", code)
	}
}

// TestReceiptNamesAGatewayThatLeft: a gateway that stops reporting holds a
// receipt at published, named as pending; once silent for the bound it
// leaves, and the receipt is enforced, naming it as departed.
func TestReceiptNamesAGatewayThatLeft(t *testing.T) {
	t.Parallel()
	s := newSystemWith(t, 2, systemOptions{env: map[string]string{"GATEWAY_SILENCE_TIMEOUT": "2s"}})
	gone := s.gateways[1]
	goneID := s.fleetID("gw-" + strings.TrimPrefix(gone.control, "http://"))
	s.fleetID("gw-" + strings.TrimPrefix(s.gateways[0].control, "http://"))
	gone.stop()
	err := <-gone.done
	gone.done <- err // for the cleanup, which waits for it too
	_, p := s.user()
	h := s.revokeWaiting(p.SessionID, 1)
	if h.Get("Revocation-Status") != "published" {
		t.Fatalf("with a gateway gone silent the wait ended %q, want published", h.Get("Revocation-Status"))
	}
	r := s.receipt(h.Get("Revocation-Id"))
	if r.Status != "published" || r.Gateways.Expected != 2 || len(r.Gateways.Pending) != 1 || r.Gateways.Pending[0] != goneID {
		t.Fatalf("receipt %+v, want published with %s pending", r, goneID)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return s.receipt(r.ID).Status == "enforced" }, "the receipt never turned enforced after the gateway left")
	r = s.receipt(r.ID)
	if r.Gateways.Expected != 1 || len(r.Gateways.Departed) != 1 || r.Gateways.Departed[0] != goneID {
		t.Fatalf("receipt %+v, want %s departed", r, goneID)
	}
	for _, g := range s.fleet() {
		if g.ID == goneID {
			t.Fatal("the silent gateway is still in the fleet")
		}
	}
}

// TestReceiptWaitsForAStoppedGateway: a gatewayd stopped with SIGSTOP holds
// receipts at published; they turn enforced once it resumes.
func TestReceiptWaitsForAStoppedGateway(t *testing.T) {
	t.Parallel()
	bin := goBuild(t, "gatewayd")
	s := newSystem(t, 0)
	p, g := s.gatewaydProcess(t, bin, map[string]string{"GATEWAY_NAME": "paused"})
	s.waitOK(g.control + "/readyz")
	id := s.fleetID("paused")
	_, u := s.user()
	p.signal(t, syscall.SIGSTOP)
	resumed := false
	defer func() {
		if !resumed {
			p.signal(t, syscall.SIGCONT)
		}
	}()
	h := s.revokeWaiting(u.SessionID, 1)
	r := s.receipt(h.Get("Revocation-Id"))
	if h.Get("Revocation-Status") != "published" || r.Status != "published" || len(r.Gateways.Pending) != 1 || r.Gateways.Pending[0] != id {
		t.Fatalf("while the gateway is stopped: %q, receipt %+v", h.Get("Revocation-Status"), r)
	}
	p.signal(t, syscall.SIGCONT)
	resumed = true
	testenv.Eventually(t, 10*time.Second, func() bool { return s.receipt(r.ID).Status == "enforced" }, "the receipt never turned enforced after the gateway resumed")
	if code := check(t, g, u.AccessToken); code != http.StatusUnauthorized {
		t.Fatalf("the resumed gateway answers %d", code)
	}
}
