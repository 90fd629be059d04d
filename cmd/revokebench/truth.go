package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
)

// truth is the ground truth of a run: each revocation's stream sequence,
// read from the stream by an ordered consumer of the tool's own, and each
// gateway's reports of its watermark with the time the gateway applied it
// (the report's "at"). A revocation was applied at a gateway at the first
// report whose watermark reaches its sequence. Gateways and the tool share
// the machine's clock.
type truth struct {
	mu      sync.Mutex
	seq     map[string]uint64                  // revocation key → stream sequence
	reports map[string][]events.GatewayApplied // gateway id → its reports, in order
	fleet   map[string]bool                    // the gateways that count
	waiters []waiter
	stop    []func()
}

type waiter struct {
	key  string
	done chan struct{}
}

// key reads a revocation's key from a stream message.
type keyFunc func(subject string, data []byte) (string, bool)

// sessionKey is a revocations.v1.session event's session id.
func sessionKey(subject string, data []byte) (string, bool) {
	ev, err := events.Decode(subject, data)
	if err != nil {
		return "", false
	}
	s, ok := ev.(events.SessionRevoked)
	return s.SID, ok
}

// bareKey is a bare message's id.
func bareKey(_ string, data []byte) (string, bool) { return string(data), true }

// watch starts following stream (from its end) and the reports on subject.
// It waits until gateways distinct gateways have reported, and counts only
// them from then on.
func watch(ctx context.Context, natsURL, stream, subject string, key keyFunc, gateways int) (*truth, error) {
	t := &truth{seq: map[string]uint64{}, reports: map[string][]events.GatewayApplied{}, fleet: map[string]bool{}}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, err
	}
	t.stop = append(t.stop, nc.Close)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var r events.GatewayApplied
		if json.Unmarshal(m.Data, &r) != nil {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		t.reports[r.GatewayID] = append(t.reports[r.GatewayID], r)
		t.wake()
	})
	if err != nil {
		t.close()
		return nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	js, err := jetstream.New(nc)
	if err != nil {
		t.close()
		return nil, err
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		t.close()
		return nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		k, ok := key(m.Subject(), m.Data())
		meta, err := m.Metadata()
		if !ok || err != nil {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		t.seq[k] = meta.Sequence.Stream
		t.wake()
	}, jetstream.PullMaxMessages(4096))
	if err != nil {
		t.close()
		return nil, err
	}
	t.stop = append(t.stop, cc.Stop)
	// Every gateway reports at least once a second.
	deadline := time.Now().Add(5 * time.Second)
	for {
		t.mu.Lock()
		n := len(t.reports)
		t.mu.Unlock()
		if n >= gateways {
			break
		}
		if time.Now().After(deadline) {
			t.close()
			return nil, fmt.Errorf("%d of %d gateways report on %s", n, gateways, subject)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond) // one heartbeat more: a gateway of a former run would show now
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.reports) != gateways {
		t.close()
		return nil, fmt.Errorf("%d gateways report on %s, want %d", len(t.reports), subject, gateways)
	}
	for id := range t.reports {
		t.fleet[id] = true
	}
	return t, nil
}

func (t *truth) close() {
	for i := len(t.stop) - 1; i >= 0; i-- {
		t.stop[i]()
	}
}

// applied returns a channel closed once every gateway of the fleet has
// reported a watermark at or past key's sequence.
func (t *truth) applied(key string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := waiter{key: key, done: make(chan struct{})}
	t.waiters = append(t.waiters, w)
	t.wake()
	return w.done
}

// wake closes the waiters that are done; t.mu is held.
func (t *truth) wake() {
	keep := t.waiters[:0]
	for _, w := range t.waiters {
		if s, ok := t.seq[w.key]; ok && t.everywhere(s) {
			close(w.done)
			continue
		}
		keep = append(keep, w)
	}
	t.waiters = keep
}

func (t *truth) everywhere(seq uint64) bool {
	for id := range t.fleet {
		rs := t.reports[id]
		if len(rs) == 0 || rs[len(rs)-1].AppliedSeq < seq {
			return false
		}
	}
	return true
}

// appliedAt is, per gateway of the fleet, when it applied key: the "at" of
// its first report that covers key's sequence. false when the sequence is
// unknown or a gateway never reported it.
func (t *truth) appliedAt(key string) ([]time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.seq[key]
	if !ok {
		return nil, false
	}
	var out []time.Time
	for id := range t.fleet {
		rs := t.reports[id]
		i := sort.Search(len(rs), func(i int) bool { return rs[i].AppliedSeq >= s })
		if i == len(rs) {
			return nil, false
		}
		out = append(out, rs[i].At)
	}
	return out, true
}

// reportCount is how many reports the fleet sent.
func (t *truth) reportCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id := range t.fleet {
		n += len(t.reports[id])
	}
	return n
}

// appliedByName is, per gateway of the fleet by its name (GATEWAY_NAME),
// when it applied key; false as for appliedAt.
func (t *truth) appliedByName(key string) (map[string]time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.seq[key]
	if !ok {
		return nil, false
	}
	out := map[string]time.Time{}
	for id := range t.fleet {
		rs := t.reports[id]
		i := sort.Search(len(rs), func(i int) bool { return rs[i].AppliedSeq >= s })
		if i == len(rs) {
			return nil, false
		}
		out[rs[i].Name] = rs[i].At
	}
	return out, true
}
