package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/revoke/internal/barepath"
	"github.com/sessionguard/revoke/internal/edgeprobe"
	"github.com/sessionguard/revoke/internal/testenv"
)

// barePath is the floor BenchmarkRevokeToRefusal is read against
// (internal/barepath), in process.
type barePath struct {
	api      string
	controls []string
}

func startBarePath(tb testing.TB, gateways int) *barePath {
	tb.Helper()
	pool := testenv.Postgres(tb)
	natsURL := testenv.StartNATS(tb).URL()
	_, js := testenv.JetStream(tb, natsURL)
	if err := barepath.Prepare(context.Background(), pool, js); err != nil {
		tb.Fatal(err)
	}
	api := httptest.NewServer(barepath.API(pool, js))
	tb.Cleanup(api.Close)
	p := &barePath{api: api.URL}
	for range gateways {
		nc, _ := testenv.JetStream(tb, natsURL) // a connection of its own, closed at cleanup
		h, stop, err := barepath.Gateway(context.Background(), nc, "")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(stop)
		srv := httptest.NewServer(h)
		tb.Cleanup(srv.Close)
		p.controls = append(p.controls, srv.URL)
	}
	return p
}

// revoke commits and publishes id's revocation.
func (p *barePath) revoke(tb testing.TB, id string) {
	req, _ := http.NewRequest("DELETE", p.api+"/bare/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		tb.Fatalf("bare revoke: %d", resp.StatusCode)
	}
}

// TestBarePathRefusesAfterRevoke keeps the benchmark's floor honest: an id
// is accepted everywhere until its revocation, then refused everywhere.
func TestBarePathRefusesAfterRevoke(t *testing.T) {
	p := startBarePath(t, 2)
	obs, err := edgeprobe.Dial(p.controls)
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	id, other := uuid.NewString(), uuid.NewString()
	if n, err := obs.Once(id); err != nil || n != 2 {
		t.Fatalf("before the revocation %d of 2 bare gateways accept (%v)", n, err)
	}
	p.revoke(t, id)
	if _, err := obs.UntilRefused(time.Now(), id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := obs.Once(other); err != nil || n != 2 {
		t.Fatalf("another id: %d of 2 bare gateways accept (%v)", n, err)
	}
}
