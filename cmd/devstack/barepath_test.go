package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/edgeprobe"
	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
)

// barePath is the floor BenchmarkRevokeToRefusal is read against: the same
// mechanism on the same machine with none of the product in it. A DELETE
// commits one row durably (one statement, one round trip), publishes it
// asynchronously to a file-stored JetStream stream configured like
// REVOCATIONS, and answers 204; each "gateway" has its own NATS connection
// and ordered consumer, puts the id in a set, and answers /v1/check with 401
// for an id in the set. There are no tokens to verify, no caller to
// authenticate, no refresh tokens, audit or outbox rows, no metrics.
type barePath struct {
	api      string
	controls []string
}

const bareStream, bareSubject = "BARE", "bare.revoked"

func startBarePath(tb testing.TB, gateways int) *barePath {
	tb.Helper()
	ctx := context.Background()
	pool := testenv.Postgres(tb)
	if _, err := pool.Exec(ctx, `CREATE TABLE bare_revocations (id uuid PRIMARY KEY, revoked_at timestamptz NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	natsURL := testenv.StartNATS(tb).URL()
	_, js := testenv.JetStream(tb, natsURL)
	if _, err := js.CreateStream(ctx, natsx.StreamConfig(events.Stream{Name: bareStream, Subjects: []string{bareSubject}, MaxAge: time.Hour}, 1)); err != nil {
		tb.Fatal(err)
	}
	api := httptest.NewServer(bareAPI(pool, js))
	tb.Cleanup(api.Close)
	p := &barePath{api: api.URL}
	for range gateways {
		p.controls = append(p.controls, startBareGateway(tb, natsURL))
	}
	return p
}

// bareAPI answers DELETE /bare/{id}: commit, publish, 204.
func bareAPI(pool *pgxpool.Pool, js jetstream.JetStream) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /bare/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, err := pool.Exec(r.Context(), `INSERT INTO bare_revocations (id, revoked_at) VALUES ($1, now())`, id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		msg := nats.NewMsg(bareSubject)
		msg.Data = []byte(id)
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(id)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// startBareGateway returns the URL of a gateway's control listener.
func startBareGateway(tb testing.TB, natsURL string) string {
	tb.Helper()
	ctx := context.Background()
	_, js := testenv.JetStream(tb, natsURL)
	stream, err := js.Stream(ctx, bareStream)
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		tb.Fatal(err)
	}
	var blocked sync.Map
	cc, err := cons.Consume(func(m jetstream.Msg) { blocked.Store(string(m.Data()), struct{}{}) },
		jetstream.PullMaxMessages(4096), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cc.Stop)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := blocked.Load(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")); ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
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
