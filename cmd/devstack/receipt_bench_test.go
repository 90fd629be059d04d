package main

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/testenv"
)

// BenchmarkReceiptEnforced measures, with 8 gateways, the time from the
// start of a revoke call sent with Prefer: wait=5 to its answer, which comes
// once the receipt is enforced at every gateway (path=receipt), beside the
// bare floor's time until its slowest gateway refuses (path=bare, the
// last-p50/p99 of RevokeToRefusal's observer). path=receipt also reports
// "slack": from the arrival of the last gateway's report that it applied
// the revocation (heard on gateway.v1.applied by the benchmark, as
// sessiond hears it) to the answer.
//
//	REVOKE_TEST_PG_FSYNC=on go test -run '^$' -bench ReceiptEnforced -benchtime 300x ./cmd/devstack/
func BenchmarkReceiptEnforced(b *testing.B) {
	const gateways = 8
	b.Run("path=receipt", func(b *testing.B) {
		s := newSystem(b, gateways)
		testenv.Eventually(b, 10*time.Second, func() bool { return len(s.fleet()) == gateways }, "the gateways never all reported")
		toks := s.logins(refusalWarmUp + b.N)
		// Every report, as it arrives.
		type heard struct {
			gateway string
			applied uint64
			at      time.Time
		}
		var (
			mu      sync.Mutex
			reports []heard
		)
		nc, err := nats.Connect(s.natsURL)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		sub, err := nc.Subscribe(events.SubjectGatewayApplied, func(m *nats.Msg) {
			at := time.Now()
			ev, err := events.Decode(m.Subject, m.Data)
			if err != nil {
				return
			}
			r := ev.(events.GatewayApplied)
			mu.Lock()
			reports = append(reports, heard{r.GatewayID, r.AppliedSeq, at})
			mu.Unlock()
		})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		pool := s.pool()
		client := &http.Client{}
		one := func(i int) (answer time.Duration, slack time.Duration) {
			req, _ := http.NewRequest(http.MethodDelete, s.api+"/v1/sessions/"+toks[i].SessionID, nil)
			req.Header.Set("Authorization", "Bearer "+s.admin)
			req.Header.Set("Prefer", "wait=5")
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			done := time.Now()
			if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Revocation-Status") != "enforced" {
				b.Fatalf("revoke: %d %v", resp.StatusCode, resp.Header)
			}
			// The relay marks the row with its sequence just after the ack,
			// without waiting: look until it has.
			var seq *int64
			testenv.Eventually(b, 5*time.Second, func() bool {
				err := pool.QueryRow(context.Background(), `SELECT max(stream_seq) FROM outbox WHERE receipt_id = $1`, resp.Header.Get("Revocation-Id")).Scan(&seq)
				return err == nil && seq != nil
			}, "the revocation's stream sequence was never recorded")
			firstAt := map[string]time.Time{}
			mu.Lock()
			for _, r := range reports {
				if r.applied >= uint64(*seq) && r.at.After(start) {
					if t, ok := firstAt[r.gateway]; !ok || r.at.Before(t) {
						firstAt[r.gateway] = r.at
					}
				}
			}
			reports = reports[:0]
			mu.Unlock()
			var lastApply time.Time
			for _, t := range firstAt {
				if t.After(lastApply) {
					lastApply = t
				}
			}
			return done.Sub(start), done.Sub(lastApply)
		}
		for i := range refusalWarmUp {
			one(i)
		}
		time.Sleep(2500 * time.Millisecond) // as in measureRefusal: let the warm-up's activity reports land
		var ans, slack []float64
		b.ResetTimer()
		for i := refusalWarmUp; i < refusalWarmUp+b.N; i++ {
			a, sl := one(i)
			ans = append(ans, millis(a))
			slack = append(slack, millis(sl))
		}
		b.StopTimer()
		reportQuantiles(b, "enforced-", ans)
		reportQuantiles(b, "slack-", slack)
		b.ReportMetric(0, "ns/op")
	})
	b.Run("path=bare", func(b *testing.B) { benchBarePath(b, gateways) })
}
