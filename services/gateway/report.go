package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/sessionguard/revoke/events"
)

// Reporter publishes the gateway's watermark on gateway.v1.applied: at once
// after the feed applies a revocation a caller waits for (its message has
// events.HeaderAwaited), other progress at most every interval (coalesced:
// one report carries every revocation applied since the last), and at least
// every Every as a heartbeat. One number says everything the gateway has
// applied, because it applies REVOCATIONS in stream order; sessiond turns
// the reports into revocation receipts without a message per gateway per
// revocation, and a fleet of N gateways under any load of revocations
// nobody waits for sends it at most N/interval reports a second.
type Reporter struct {
	nc       *nats.Conn
	g        *Gateway
	id       string
	name     string
	version  string
	started  time.Time
	every    time.Duration
	interval time.Duration
	log      *slog.Logger
}

// NewReporter returns a reporter of g on nc. name and version describe the
// gateway to operators; every is the heartbeat, interval the shortest time
// between two reports of progress nobody waits for (0: report every apply).
func NewReporter(nc *nats.Conn, g *Gateway, name, version string, every, interval time.Duration, log *slog.Logger) *Reporter {
	return &Reporter{nc: nc, g: g, id: uuid.NewString(), name: name, version: version, started: g.now().UTC(),
		every: every, interval: min(interval, every), log: log}
}

// ID is the gateway id the reports carry.
func (r *Reporter) ID() string { return r.id }

// Run reports until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	// One timer says when the next report is due: the heartbeat after the
	// last report, or sooner, the end of the coalescing interval when
	// progress is waiting to be reported.
	last := time.Now()
	r.publish() // say hello at once: receipts expect the gateways they know of
	due := time.NewTimer(r.every)
	defer due.Stop()
	pending := false
	report := func() {
		r.publish()
		last, pending = time.Now(), false
		due.Reset(r.every)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.g.feed.Awaited():
			report()
		case <-r.g.feed.Progress():
			if pending {
				continue // the report due at the interval's end will carry it
			}
			wait := r.interval - time.Since(last)
			if wait <= 0 {
				report()
				continue
			}
			pending = true
			due.Reset(wait)
		case <-due.C:
			report()
		}
	}
}

func (r *Reporter) publish() {
	now := r.g.now()
	applied, last := r.g.feed.Applied()
	ev := events.GatewayApplied{GatewayID: r.id, Name: r.name, Version: r.version, StartedAt: r.started,
		AppliedSeq: applied, StreamLastSeq: last, State: r.g.State(), At: now.UTC()}
	data, err := events.Encode(ev)
	if err == nil {
		err = r.nc.Publish(events.SubjectGatewayApplied, data)
	}
	if err != nil {
		r.log.Warn("applied report not published", "error", err.Error())
	}
}
