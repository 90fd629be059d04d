// Package barepath is the floor the revocation benchmarks are read
// against: the same mechanism on the same machine with none of the product
// in it. The API commits one row durably (one statement, one round trip),
// publishes it asynchronously to a file-stored JetStream stream configured
// like REVOCATIONS, and answers 204; each gateway has its own NATS
// connection and ordered consumer, puts the id in a set, and answers
// /v1/check with 401 for an id in the set (the bearer token is the id).
// There are no tokens to verify, no caller to authenticate, no refresh
// tokens, audit, outbox or receipt rows, no metrics.
//
// cmd/devstack's BenchmarkRevokeToRefusal runs it in process;
// cmd/revokebench runs it as processes of their own, with the gateways
// reporting their watermark the way gatewayd does for an awaited revocation.
package barepath

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/natsx"
)

// The stream, its subject, and the subject of the gateways' reports.
const (
	Stream  = "BARE"
	Subject = "bare.revoked"
	Applied = "bare.applied"
)

// Prepare makes the API's table and the stream.
func Prepare(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream) error {
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bare_revocations (id uuid PRIMARY KEY, revoked_at timestamptz NOT NULL)`); err != nil {
		return err
	}
	_, err := js.CreateOrUpdateStream(ctx, natsx.StreamConfig(events.Stream{Name: Stream, Subjects: []string{Subject}, MaxAge: time.Hour}, 1))
	return err
}

// API answers DELETE /bare/{id}: a durable INSERT, an asynchronous publish
// (its ack read by the client library), 204.
func API(pool *pgxpool.Pool, js jetstream.JetStream) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /bare/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, err := pool.Exec(r.Context(), `INSERT INTO bare_revocations (id, revoked_at) VALUES ($1, now())`, id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		msg := nats.NewMsg(Subject)
		msg.Data = []byte(id)
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(id)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// Gateway follows the stream on nc. Its handler answers GET /v1/check.
// With a name, it reports its watermark on Applied, in gateway.v1.applied's
// format, after every apply (coalesced while a report is due) and every
// second. stop ends it.
func Gateway(ctx context.Context, nc *nats.Conn, name string) (h http.Handler, stop func(), err error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	cons, err := js.OrderedConsumer(ctx, Stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, nil, err
	}
	var (
		blocked  sync.Map
		applied  sync.Mutex
		seq      uint64
		progress = make(chan struct{}, 1)
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		blocked.Store(string(m.Data()), struct{}{})
		if name == "" {
			return
		}
		if meta, err := m.Metadata(); err == nil {
			applied.Lock()
			seq = meta.Sequence.Stream
			applied.Unlock()
		}
		select {
		case progress <- struct{}{}:
		default:
		}
	}, jetstream.PullMaxMessages(4096), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	if name != "" {
		go report(rctx, nc, name, progress, func() uint64 { applied.Lock(); defer applied.Unlock(); return seq })
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/check", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := blocked.Load(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")); ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux, func() { cancel(); cc.Stop() }, nil
}

// report publishes the watermark after progress and every second.
func report(ctx context.Context, nc *nats.Conn, name string, progress <-chan struct{}, applied func() uint64) {
	id, started := uuid.NewString(), time.Now().UTC()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		seq := applied()
		data, _ := json.Marshal(events.GatewayApplied{GatewayID: id, Name: name, Version: "bare", StartedAt: started,
			AppliedSeq: seq, StreamLastSeq: seq, State: events.GatewayCurrent, At: time.Now().UTC()})
		_ = nc.Publish(Applied, data)
		select {
		case <-ctx.Done():
			return
		case <-progress:
		case <-t.C:
		}
	}
}
