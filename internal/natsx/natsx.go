package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
)

// Connect dials url and keeps reconnecting for ever; name identifies the
// client in the server's monitoring.
func Connect(url, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err.Error(), "url", c.ConnectedUrlRedacted())
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		// Why the last attempt to (re)connect failed, for Explain: the
		// connection keeps no error of its own while it retries.
		// "no servers available" between rounds says less than the dial
		// error before it, which is kept.
		nats.ReconnectErrHandler(func(c *nats.Conn, err error) {
			if _, known := dialErrors.Load(c); !known || !errors.Is(err, nats.ErrNoServers) {
				dialErrors.Store(c, err)
			}
		}),
		nats.ClosedHandler(func(c *nats.Conn) { dialErrors.Delete(c) }),
	)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", url, err)
	}
	return nc, nil
}

// dialErrors holds, for each connection made by Connect, why its last
// attempt to reach a server failed.
var dialErrors sync.Map // *nats.Conn → error

// Explain adds to err, when nc is not connected, what it tries to reach and
// why it cannot: "context deadline exceeded" alone names neither.
func Explain(nc *nats.Conn, err error) error {
	if err == nil || nc == nil || nc.IsConnected() {
		return err
	}
	why := "no answer yet"
	if last, ok := dialErrors.Load(nc); ok {
		why = last.(error).Error()
	} else if last := nc.LastError(); last != nil {
		why = last.Error()
	}
	servers := nc.Servers()
	for i, s := range servers {
		if u, perr := url.Parse(s); perr == nil {
			servers[i] = u.Redacted()
		}
	}
	return fmt.Errorf("%w (NATS %s, not connected to %s: %s)", err, strings.ToLower(nc.Status().String()), strings.Join(servers, ","), why)
}

// Explaining is f with its error explained (Explain): a loop.Restart body
// that talks to NATS.
func Explaining(nc *nats.Conn, f func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error { return Explain(nc, f(ctx)) }
}

// StreamConfig turns a contract stream into a JetStream file-stored stream
// with replicas copies. No count or size limit is set: the only way a message
// leaves is its max age.
func StreamConfig(s events.Stream, replicas int) jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:       s.Name,
		Subjects:   s.Subjects,
		MaxAge:     s.MaxAge,
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		Replicas:   replicas,
		Duplicates: 2 * time.Minute,
		MaxMsgs:    -1,
		MaxBytes:   -1,
	}
}

// EnsureStreams creates or updates each stream so that it matches its
// definition; it is safe to call from every replica at every start. A
// stream that matches already is left alone: every replica and every relay
// restart calls this, and an update for nothing makes the server rewrite
// the stream's configuration while gateways create their consumers on it
// (the embedded server's race detector caught the two touching the same
// store).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int, streams ...events.Stream) error {
	for _, s := range streams {
		want := StreamConfig(s, replicas)
		if st, err := js.Stream(ctx, s.Name); err == nil {
			if info, err := st.Info(ctx); err == nil && matches(info.Config, want) {
				continue
			}
		}
		if _, err := js.CreateOrUpdateStream(ctx, want); err != nil {
			return fmt.Errorf("nats: stream %s: %w", s.Name, err)
		}
	}
	return nil
}

// matches reports whether a stream's configuration has every setting
// StreamConfig makes.
func matches(got, want jetstream.StreamConfig) bool {
	return slices.Equal(got.Subjects, want.Subjects) && got.MaxAge == want.MaxAge && got.Storage == want.Storage &&
		got.Retention == want.Retention && got.Discard == want.Discard && got.Replicas == want.Replicas &&
		got.Duplicates == want.Duplicates && got.MaxMsgs == want.MaxMsgs && got.MaxBytes == want.MaxBytes
}

// ErrNoJetStream is returned when the server has JetStream disabled.
var ErrNoJetStream = errors.New("nats: JetStream is not enabled on the server (start nats-server with -js)")
