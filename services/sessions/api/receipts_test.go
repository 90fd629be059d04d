package api_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/services/sessions/sessionstest"
)

type receiptBody struct {
	ID       string
	Status   string
	Reason   string
	Gateways struct {
		Expected int
		Pending  []string
	}
}

// TestEveryRevokingCallGivesAReceipt: each revoking call names its receipt
// in Revocation-Id (and in its body where it has one), and the receipt is
// there for the caller and for admins in scope; here no relay runs, so the
// receipts stay committed, except one of a call that revoked nothing, which
// is enforced at once.
func TestEveryRevokingCallGivesAReceipt(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	org := e.Org("A")
	_, orgAdmin := e.NewUser(org, "org_admin")
	uid, email := e.User(org, "user")
	a, b, c := e.Login(email, "password-1"), e.Login(email, "password-1"), e.Login(email, "password-1")
	e.Login(email, "password-1") // one more, for "revoke my others"
	victim, _ := e.NewUser(org, "user")
	_, disabled := e.User(org, "user")
	disabledID := e.Claims(e.Login(disabled, "password-1").AccessToken).Subject

	calls := []struct {
		name, method, path, token, status string
		body                              any
		code                              int
	}{
		{"admin revokes a session", "DELETE", "/v1/sessions/" + c.SessionID, orgAdmin.AccessToken, "committed", nil, 204},
		{"revoke one of mine", "DELETE", "/v1/me/sessions/" + b.SessionID, a.AccessToken, "committed", nil, 204},
		{"revoke my others", "DELETE", "/v1/me/sessions", a.AccessToken, "committed", nil, 200},
		{"revoke my others again: nothing left", "DELETE", "/v1/me/sessions", a.AccessToken, "enforced", nil, 200},
		{"admin revokes a user", "DELETE", "/v1/users/" + victim + "/sessions", orgAdmin.AccessToken, "committed", nil, 200},
		{"admin disables a user", "PATCH", "/v1/users/" + disabledID, orgAdmin.AccessToken, "committed", map[string]bool{"disabled": true}, 200},
		{"admin disables them again: nothing to revoke", "PATCH", "/v1/users/" + disabledID, orgAdmin.AccessToken, "enforced", map[string]bool{"disabled": true}, 200},
		{"logout", "POST", "/v1/auth/logout", a.AccessToken, "committed", nil, 204},
	}
	for _, tc := range calls {
		var b []byte
		if tc.body != nil {
			b, _ = json.Marshal(tc.body)
		}
		r := e.Raw(tc.method, tc.path, tc.token, "application/json", b)
		if r.Status != tc.code {
			t.Fatalf("%s: %d %s", tc.name, r.Status, r.Body)
		}
		id := r.Header.Get("Revocation-Id")
		if !events.IsUUID(id) {
			t.Fatalf("%s: Revocation-Id %q", tc.name, id)
		}
		if len(r.Body) > 0 {
			var body struct {
				RevocationID string `json:"revocation_id"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil || body.RevocationID != id {
				t.Fatalf("%s: body %s does not name receipt %s", tc.name, r.Body, id)
			}
		}
		var rc receiptBody
		if code := e.Call("GET", "/v1/revocations/"+id, orgAdmin.AccessToken, nil, &rc); code != 200 || rc.ID != id || rc.Status != tc.status {
			t.Fatalf("%s: receipt %d %+v, want %s", tc.name, code, rc, tc.status)
		}
	}
	// Enabling revokes nothing and names no receipt.
	if r := e.Raw("PATCH", "/v1/users/"+disabledID, orgAdmin.AccessToken, "application/json", []byte(`{"disabled":false}`)); r.Status != 200 || r.Header.Get("Revocation-Id") != "" {
		t.Fatalf("enable: %d, Revocation-Id %q", r.Status, r.Header.Get("Revocation-Id"))
	}
	_ = uid
}

// TestReceiptScope: a receipt is the caller's and its org's admins'; to
// anyone else it does not exist.
func TestReceiptScope(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	orgA, orgB := e.Org("A"), e.Org("B")
	_, adminA := e.NewUser(orgA, "org_admin")
	_, adminB := e.NewUser(orgB, "org_admin")
	_, email := e.User(orgA, "user")
	mine, other := e.Login(email, "password-1"), e.Login(email, "password-1")
	_, stranger := e.NewUser(orgA, "user")
	r := e.Raw("DELETE", "/v1/me/sessions/"+other.SessionID, mine.AccessToken, "", nil)
	id := r.Header.Get("Revocation-Id")
	for name, tc := range map[string]struct {
		token string
		code  int
	}{
		"the caller":              {mine.AccessToken, 200},
		"its org's admin":         {adminA.AccessToken, 200},
		"a global admin":          {e.Admin.AccessToken, 200},
		"another org's admin":     {adminB.AccessToken, 404},
		"another user of the org": {stranger.AccessToken, 404},
	} {
		if code := e.Call("GET", "/v1/revocations/"+id, tc.token, nil, nil); code != tc.code {
			t.Errorf("%s: %d, want %d", name, code, tc.code)
		}
	}
	sessionstest.AssertProblem(t, e.Raw("GET", "/v1/revocations/not-a-uuid", mine.AccessToken, "", nil), 400)
	sessionstest.AssertProblem(t, e.Raw("GET", "/v1/revocations/00000000-0000-4000-8000-000000000000", e.Admin.AccessToken, "", nil), 404)
	sessionstest.AssertProblem(t, e.Raw("GET", "/v1/gateways", adminA.AccessToken, "", nil), 403)
	var fleet struct{ Gateways []any }
	if code := e.Call("GET", "/v1/gateways", e.Admin.AccessToken, nil, &fleet); code != 200 || fleet.Gateways == nil {
		t.Fatalf("GET /v1/gateways: %d %+v", code, fleet)
	}
}

// TestPreferWaitTimesOutWithWhatIsPending: a wait that ends before the
// revocation is enforced (here nothing publishes it) answers after the
// wait with the status it reached; waits are capped at 10 s.
func TestPreferWaitTimesOutWithWhatIsPending(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	_, p := e.NewUser(e.Org("A"), "user")
	req, _ := http.NewRequest("POST", e.Srv.URL+"/v1/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+p.AccessToken)
	req.Header.Set("Prefer", "respond-async, wait=1")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 204 || resp.Header.Get("Revocation-Status") != "committed" || resp.Header.Get("Preference-Applied") != "wait=1" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if took < time.Second || took > 3*time.Second {
		t.Fatalf("the wait took %s, want about a second", took)
	}
}

// TestWaitingCallsMarkTheirReceipt: a revoking call with Prefer: wait=N
// writes a receipt marked awaited (its events then ask the gateways to
// report at once); one without, or with wait=0, does not.
func TestWaitingCallsMarkTheirReceipt(t *testing.T) {
	t.Parallel()
	e := sessionstest.New(t)
	_, email := e.User(e.Org("A"), "user")
	for _, tc := range []struct {
		prefer  string
		awaited bool
	}{{"", false}, {"wait=0", false}, {"wait=1", true}} {
		mine, other := e.Login(email, "password-1"), e.Login(email, "password-1")
		req, _ := http.NewRequest("DELETE", e.Srv.URL+"/v1/me/sessions/"+other.SessionID, nil)
		req.Header.Set("Authorization", "Bearer "+mine.AccessToken)
		if tc.prefer != "" {
			req.Header.Set("Prefer", tc.prefer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var awaited bool
		if err := e.Pool.QueryRow(t.Context(), `SELECT awaited FROM revocation_receipts WHERE id = $1`, resp.Header.Get("Revocation-Id")).Scan(&awaited); err != nil {
			t.Fatalf("Prefer %q: %d, %v", tc.prefer, resp.StatusCode, err)
		}
		if awaited != tc.awaited {
			t.Errorf("Prefer %q: awaited %v, want %v", tc.prefer, awaited, tc.awaited)
		}
	}
}
