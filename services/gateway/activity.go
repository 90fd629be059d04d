package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/sessionguard/revoke/events"
)

// Activity reports when sessions were last seen at this gateway, coalesced:
// at most one report per session per Every, published in batches.
type Activity struct {
	nc      *nats.Conn
	every   time.Duration
	flush   time.Duration
	in      chan seen
	log     *slog.Logger
	metrics *Metrics
}

type seen struct {
	sid string
	at  int64
}

// NewActivity returns a reporter publishing on nc.
func NewActivity(nc *nats.Conn, every, flush time.Duration, metrics *Metrics, log *slog.Logger) *Activity {
	return &Activity{nc: nc, every: every, flush: flush, in: make(chan seen, 4096), metrics: metrics, log: log}
}

// Seen notes a request of id's session at now (unix ns). It is on the hot
// path: one atomic load in the common case, and it never blocks.
func (a *Activity) Seen(id *Identity, now int64) {
	last := id.lastReported.Load()
	if now-last < int64(a.every) || !id.lastReported.CompareAndSwap(last, now) {
		return
	}
	select {
	case a.in <- seen{sid: id.Session, at: now}:
	default: // a full queue drops a report: it only delays last_active_at
	}
}

// Run batches and publishes reports until ctx ends.
func (a *Activity) Run(ctx context.Context) {
	t := time.NewTicker(a.flush)
	defer t.Stop()
	batch := map[string]int64{}
	sent := map[string]int64{} // per session, the last report, across tokens
	for {
		select {
		case <-ctx.Done():
			a.publish(batch)
			return
		case s := <-a.in:
			if s.at-sent[s.sid] >= int64(a.every) && s.at > batch[s.sid] {
				batch[s.sid] = s.at
			}
		case now := <-t.C:
			for sid, at := range batch {
				sent[sid] = at
			}
			a.publish(batch)
			clear(batch)
			for sid, at := range sent {
				if now.UnixNano()-at > int64(a.every) {
					delete(sent, sid)
				}
			}
		}
	}
}

func (a *Activity) publish(batch map[string]int64) {
	if len(batch) == 0 {
		return
	}
	ev := events.SessionActivity{EventID: uuid.NewString()}
	flush := func() {
		if len(ev.Sessions) == 0 {
			return
		}
		data, err := events.Encode(ev)
		if err == nil {
			err = a.nc.Publish(ev.Subject(), data)
		}
		if err != nil {
			a.log.Warn("activity report not published", "error", err.Error())
		} else {
			a.metrics.activity.Inc()
		}
		ev = events.SessionActivity{EventID: uuid.NewString()}
	}
	for sid, at := range batch {
		ev.Sessions = append(ev.Sessions, events.SessionSeen{SID: sid, SeenAt: time.Unix(0, at).UTC()})
		if len(ev.Sessions) == 1000 {
			flush()
		}
	}
	flush()
}
