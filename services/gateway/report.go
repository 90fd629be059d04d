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
// after the feed applies (coalesced: a burst of revocations makes one report
// that carries the last of them), and at least every Every as a heartbeat.
// One number says everything the gateway has applied, because it applies
// REVOCATIONS in stream order; sessiond turns the reports into revocation
// receipts without a message per gateway per revocation.
type Reporter struct {
	nc      *nats.Conn
	g       *Gateway
	id      string
	name    string
	version string
	started time.Time
	every   time.Duration
	log     *slog.Logger
}

// NewReporter returns a reporter of g on nc. name and version describe the
// gateway to operators.
func NewReporter(nc *nats.Conn, g *Gateway, name, version string, every time.Duration, log *slog.Logger) *Reporter {
	return &Reporter{nc: nc, g: g, id: uuid.NewString(), name: name, version: version, started: g.now().UTC(), every: every, log: log}
}

// ID is the gateway id the reports carry.
func (r *Reporter) ID() string { return r.id }

// Run reports until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	r.publish() // say hello at once: receipts expect the gateways they know of
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.g.feed.Progress():
		case <-t.C:
		}
		r.publish()
	}
}

func (r *Reporter) publish() {
	now := r.g.now()
	applied, last := r.g.feed.Applied()
	ev := events.GatewayApplied{GatewayID: r.id, Name: r.name, Version: r.version, StartedAt: r.started,
		AppliedSeq: applied, StreamLastSeq: last, State: r.g.State(now), At: now.UTC()}
	data, err := events.Encode(ev)
	if err == nil {
		err = r.nc.Publish(events.SubjectGatewayApplied, data)
	}
	if err != nil {
		r.log.Warn("applied report not published", "error", err.Error())
	}
}
