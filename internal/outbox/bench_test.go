package outbox

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
)

// BenchmarkCommitToDelivery measures the revocation path from a committed
// outbox transaction to the event's delivery by a JetStream consumer, with
// revocations paced at 500/s, by each of the relay's paths: path=fast hands
// the committed rows to the relay (Committed, what sessiond does);
// path=sweep sends NOTIFY in the transaction and lets the relay's sweep read
// the rows back (what a process without a relay, revokectl, gets). b.N is
// the number of revocations:
//
//	REVOKE_TEST_PG_FSYNC=on go test -run '^$' -bench CommitToDelivery -benchtime 5000x ./internal/outbox/
func BenchmarkCommitToDelivery(b *testing.B) {
	for _, path := range []string{"fast", "sweep"} {
		b.Run("path="+path, func(b *testing.B) { commitToDelivery(b, path == "fast") })
	}
}

func commitToDelivery(b *testing.B, fast bool) {
	f := newFixtureTB(b)
	r := f.relay(b, f.js)
	f.run(b, r)

	var (
		mu        sync.Mutex
		committed = make(map[string]time.Time, b.N)
		arrived   = make(map[string]time.Time, b.N)
		done      = make(chan struct{})
	)
	cc, err := f.js.OrderedConsumer(context.Background(), events.StreamRevocations, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := cc.Consume(func(m jetstream.Msg) {
		now := time.Now()
		id := m.Headers().Get("Nats-Msg-Id")
		mu.Lock()
		arrived[id] = now
		if len(arrived) == b.N {
			close(done)
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Stop()

	const rate = 500
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-tick.C
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ev := events.SessionRevoked{EventID: uuid.NewString(), SID: uuid.NewString(), Sub: uuid.NewString(), Org: uuid.NewString(),
				Reason: events.ReasonAdminRevoke, RevokedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(6 * time.Minute).UTC()}
			p, _ := events.Encode(ev)
			err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
				bt := &pgx.Batch{}
				bt.Queue(`INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)`, ev.EventID, ev.Subject(), p)
				if !fast {
					bt.Queue(`SELECT pg_notify('outbox', '')`)
				}
				return tx.SendBatch(context.Background(), bt).Close()
			})
			now := time.Now()
			if err != nil {
				b.Error(err)
				return
			}
			if fast {
				r.Committed(context.Background(), []Message{{EventID: ev.EventID, Subject: ev.Subject(), Payload: p}})
			}
			mu.Lock()
			committed[ev.EventID] = now
			mu.Unlock()
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d events delivered", len(arrived), b.N)
	}
	b.StopTimer()
	lat := make([]float64, 0, b.N)
	for id, c := range committed {
		a := arrived[id]
		d := a.Sub(c)
		if d < 0 {
			d = 0 // delivered before the committing client saw its commit return
		}
		lat = append(lat, float64(d.Microseconds())/1000)
	}
	sort.Float64s(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(0, "ns/op")
}
