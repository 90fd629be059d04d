package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/postgres"
)

// The bare mechanism: the floor a revocation receipt is measured against.
// An API that commits one row durably and publishes one message, and
// gateways that follow the stream with an ordered consumer, keep the ids in
// a map and report their watermark after every apply, as gatewayd does for
// an awaited revocation. No authentication, no verification, no audit, no
// receipt: what is left is PostgreSQL's commit, JetStream's publish and
// delivery, and one report.
const (
	bareStream  = "BARE"
	bareSubject = "bare.revoked"
	bareApplied = "bare.applied"
)

// bareSchema is the bare API's table and stream, made by the load tool.
func bareSchema(ctx context.Context, pool *pgxpool.Pool, natsURL string) error {
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bare_revocations (id uuid PRIMARY KEY, revoked_at timestamptz NOT NULL)`); err != nil {
		return err
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: bareStream, Subjects: []string{bareSubject}, MaxAge: time.Hour, Storage: jetstream.FileStorage})
	return err
}

// bareAPI answers DELETE /bare/{id}: a durable INSERT, an asynchronous
// publish (acks read by the client library), 204.
func bareAPI(ctx context.Context, databaseURL, natsURL string) (http.Handler, func(), error) {
	pool, err := postgres.Connect(ctx, databaseURL)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		pool.Close()
		return nil, nil, err
	}
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
	return mux, func() { nc.Close(); pool.Close() }, nil
}

// bareGateway follows BARE and answers GET /v1/check: 401 for an id it
// has applied (the bearer token is the id), else 200. It reports its
// watermark on bare.applied, in gateway.v1.applied's format, after every
// apply (coalesced while a report is being sent) and every second.
func bareGateway(ctx context.Context, natsURL, name string) (http.Handler, func(), error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	cons, err := js.OrderedConsumer(ctx, bareStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	var (
		blocked  sync.Map
		mu       sync.Mutex
		applied  uint64
		progress = make(chan struct{}, 1)
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		blocked.Store(string(m.Data()), struct{}{})
		if meta, err := m.Metadata(); err == nil {
			mu.Lock()
			applied = meta.Sequence.Stream
			mu.Unlock()
		}
		select {
		case progress <- struct{}{}:
		default:
		}
	}, jetstream.PullMaxMessages(4096), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	id, started := uuid.NewString(), time.Now().UTC()
	report := func() {
		mu.Lock()
		seq := applied
		mu.Unlock()
		now := time.Now().UTC()
		data, _ := json.Marshal(events.GatewayApplied{GatewayID: id, Name: name, Version: "bare", StartedAt: started,
			AppliedSeq: seq, StreamLastSeq: seq, State: events.GatewayCurrent, At: now})
		_ = nc.Publish(bareApplied, data)
	}
	rctx, stop := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		report()
		for {
			select {
			case <-rctx.Done():
				return
			case <-progress:
			case <-t.C:
			}
			report()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/check", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := blocked.Load(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")); ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux, func() { stop(); cc.Stop(); nc.Close() }, nil
}

var errNeedFlags = errors.New("needs -database and -nats (api) or -nats and -name (gateway)")
