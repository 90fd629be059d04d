package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAProblemNamesItsRequest: a problem document carries the request id
// the response's X-Request-Id header carries: the caller's when sane, else
// a fresh one.
func TestAProblemNamesItsRequest(t *testing.T) {
	h := RequestIDMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, http.StatusConflict, "conflict", "already there")
	}))
	for _, sent := range []string{"req-42.a_b", "", "bad id with spaces"} {
		req := httptest.NewRequest("GET", "/x", nil)
		if sent != "" {
			req.Header.Set("X-Request-Id", sent)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var p Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		id := rec.Header().Get("X-Request-Id")
		if id == "" || p.RequestID != id || p.Status != http.StatusConflict || p.Type != ProblemTypeBase+"conflict" {
			t.Errorf("sent %q: header %q, problem %+v", sent, id, p)
		}
		if sent == "req-42.a_b" && id != sent || sent == "bad id with spaces" && id == sent {
			t.Errorf("sent %q, got %q", sent, id)
		}
	}
}
