package edgeprobe

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// gateway answers 200 to its first accept requests for the token, then 401;
// it counts the connections it accepted.
func gateway(t *testing.T, accept int64, status int) (*httptest.Server, *atomic.Int64) {
	var n, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/check" || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if n.Add(1) <= accept {
			w.WriteHeader(status)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestUntilRefusedWaitsForEveryGateway(t *testing.T) {
	a, aConns := gateway(t, 0, http.StatusOK)
	b, bConns := gateway(t, 3, http.StatusOK)
	o, err := Dial([]string{a.URL, b.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	start := time.Now()
	got, err := o.UntilRefused(start, "tok", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] <= 0 || got[1] <= got[0] {
		t.Fatalf("times %v: want both set, the gateway that refused later later", got)
	}
	if o.Rounds() != 4 {
		t.Fatalf("%d rounds, want 4 (three accepted, then refused)", o.Rounds())
	}
	if aConns.Load() != 1 || bConns.Load() != 1 {
		t.Fatalf("connections %d and %d: want one kept alive to each", aConns.Load(), bConns.Load())
	}
}

func TestUntilRefusedReportsOtherAnswersAndTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		accept  int64
		status  int
		limit   time.Duration
		wantErr string
	}{
		{"a 503", 1, http.StatusServiceUnavailable, 5 * time.Second, "503"},
		{"a gateway that never refuses", 1 << 40, http.StatusOK, 20 * time.Millisecond, "still accept"},
	} {
		g, _ := gateway(t, tc.accept, tc.status)
		o, err := Dial([]string{g.URL})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.UntilRefused(time.Now(), "tok", tc.limit); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Fatalf("%s gave %v", tc.name, err)
		}
		o.Close()
	}
}

func TestOnceCountsTheGatewaysThatAccept(t *testing.T) {
	accepting, _ := gateway(t, 1<<40, http.StatusOK)
	refusing, _ := gateway(t, 0, http.StatusOK)
	o, err := Dial([]string{accepting.URL, refusing.URL, accepting.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if n, err := o.Once("tok"); err != nil || n != 2 {
		t.Fatalf("Once gave %d, %v: want 2 of 3 accepting", n, err)
	}
	if o.Rounds() != 0 {
		t.Fatalf("Once counted %d rounds: rounds are UntilRefused's", o.Rounds())
	}
}
