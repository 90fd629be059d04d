// Package ssf is sessiond's OpenID Shared Signals Framework 1.0
// transmitter, with the CAEP Interoperability Profile 1.0: receivers
// (Okta, Google Workspace, Keycloak, a customer's SIEM) subscribe to
// streams of Security Event Tokens about the sessions and accounts of
// their org.
//
// What a stream carries comes from the same committed outbox as every
// revocation: each transaction that revokes sessions, disables, enables or
// erases an account writes one signal (events.SessionsSignal,
// events.AccountSignal) when a live stream takes its org's signals; the
// relay publishes it to the SIGNALS stream. Each SSF stream is two durable
// JetStream consumers of SIGNALS that start at the stream's creation: its
// data lane (its org's signals, or every org's) and its control lane
// (verification and stream-updated, which SSF sends whatever the stream's
// event types, and which go on while the data lane is paused). One sessiond
// replica at a time (the holder of a PostgreSQL advisory lock) runs the
// lanes: it turns each signal into the stream's SETs, signs them (RS256)
// and pushes them (RFC 8935), in order, retrying with backoff and pausing a
// stream whose receiver has failed for longer than a bound; or it queues
// them in PostgreSQL for the receiver to poll (RFC 8936) and acknowledge.
// A signal is acknowledged to JetStream only once its SETs are delivered
// or queued, so a crash or restart loses none and repeats some, with the
// same jti. Delivery is off the revocation path: a slow receiver slows
// only its own stream.
package ssf

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/services/sessions"
)

// Config tunes the transmitter.
type Config struct {
	// Issuer is the iss of every SET and the issuer of the configuration
	// (sessiond's ISSUER); the endpoints it names hang off it.
	Issuer string
	// AllowHTTP lets push endpoints be plain http (the dev stack, tests);
	// everywhere else they must be https.
	AllowHTTP bool
	// AllowPrivate lets pushes go to loopback, private, link-local and
	// unique-local addresses (SSF_ALLOW_PRIVATE_NETWORKS; the dev stack, or
	// a receiver inside the network). Otherwise a stream's endpoint cannot
	// make sessiond reach what only it can reach.
	AllowPrivate bool
	// PauseAfter is how long a push stream may fail before the transmitter
	// pauses it (SSF_PAUSE_AFTER, default 1 h). Its SETs are held until the
	// receiver enables it again.
	PauseAfter time.Duration
	// PollWait is how long a long poll waits for a SET (RFC 8936 section 2).
	PollWait time.Duration
	// VerificationInterval is every stream's min_verification_interval.
	VerificationInterval time.Duration
	// MaxStreamsPerClient bounds the streams of one receiver.
	MaxStreamsPerClient int
	// PushTimeout bounds one push request.
	PushTimeout time.Duration
	// MaxBackoff bounds the wait between two tries of a push.
	MaxBackoff time.Duration
}

// DefaultConfig is the production configuration for issuer.
func DefaultConfig(issuer string) Config {
	return Config{Issuer: issuer, PauseAfter: time.Hour, PollWait: 20 * time.Second,
		VerificationInterval: 5 * time.Second, MaxStreamsPerClient: 25, PushTimeout: 10 * time.Second, MaxBackoff: 5 * time.Second}
}

// Clients authenticates the receivers' access tokens (the client
// credentials grant's): sessions.Service.
type Clients interface {
	ClientByToken(ctx context.Context, token string) (sessions.Client, error)
}

// Transmitter serves the SSF endpoints and delivers the streams.
type Transmitter struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	clients Clients
	keys    *Keys
	relay   sessions.OutboxRelay
	cfg     Config
	base    string      // the issuer without a trailing slash: the endpoints hang off it
	seal    cipher.AEAD // the push receivers' authorization headers
	http    *http.Client
	metrics *Metrics
	log     *slog.Logger

	wake chan struct{} // the supervisor: a stream changed here
	// polled wakes this replica's long polls of a stream when its lane
	// queues SETs; replicas that do not run the lanes look every pollTick.
	mu     sync.Mutex
	polled map[string]chan struct{}
}

// New wires a transmitter. kek seals the push receivers' authorization
// headers; relay takes the outbox rows of verifications and status
// changes once they commit.
func New(pool *pgxpool.Pool, js jetstream.JetStream, clients Clients, keys *Keys, relay sessions.OutboxRelay, kek []byte, cfg Config, m *Metrics, log *slog.Logger) (*Transmitter, error) {
	block, err := aes.NewCipher(sessions.DeriveKey(kek, "ssf-authorization-header"))
	if err != nil {
		return nil, err
	}
	seal, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if _, err := url.Parse(cfg.Issuer); err != nil || cfg.Issuer == "" {
		return nil, fmt.Errorf("ssf: issuer %q is not a URL", cfg.Issuer)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivate {
		dialer.Control = publicOnly
	}
	client := &http.Client{
		Timeout: cfg.PushTimeout,
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
		},
		// A redirect is an answer other than 202: the push is tried again,
		// never sent to where the redirect points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Transmitter{pool: pool, js: js, clients: clients, keys: keys, relay: relay, cfg: cfg, base: strings.TrimSuffix(cfg.Issuer, "/"), seal: seal, http: client,
		metrics: m, log: log, wake: make(chan struct{}, 1), polled: map[string]chan struct{}{}}, nil
}

// changed wakes this replica's supervisor: a stream was created, changed or
// deleted here.
func (t *Transmitter) changed() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// pollSignal is the channel that closes when a lane of stream id here
// queues SETs.
func (t *Transmitter) pollSignal(id string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch, ok := t.polled[id]
	if !ok {
		ch = make(chan struct{})
		t.polled[id] = ch
	}
	return ch
}

// queued wakes the long polls of stream id waiting here.
func (t *Transmitter) queued(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch, ok := t.polled[id]; ok {
		close(ch)
		delete(t.polled, id)
	}
}

// sealHeader seals a push receiver's authorization header for stream id.
func (t *Transmitter) sealHeader(id, header string) ([]byte, error) {
	if header == "" {
		return nil, nil
	}
	nonce := make([]byte, t.seal.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return t.seal.Seal(nonce, nonce, []byte(header), []byte(id)), nil
}

// openHeader opens what sealHeader sealed.
func (t *Transmitter) openHeader(id string, sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	ns := t.seal.NonceSize()
	if len(sealed) < ns {
		return "", fmt.Errorf("ssf: stream %s: sealed authorization header too short", id)
	}
	b, err := t.seal.Open(nil, sealed[:ns], sealed[ns:], []byte(id))
	if err != nil {
		return "", fmt.Errorf("ssf: stream %s: the authorization header does not open with this KEY_ENCRYPTION_KEY", id)
	}
	return string(b), nil
}

// endpoint is the URL of one of the transmitter's endpoints.
func (t *Transmitter) endpoint(path string) string { return t.base + path }

// publicOnly refuses connections to addresses that are not public: a push
// endpoint that names (or resolves to) loopback, a private network, a
// link-local or unique-local address. It checks the address dialled, after
// resolution, so a name cannot point around it.
func publicOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("push endpoint address %q: %w", host, err)
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() ||
		sharedAddressSpace.Contains(ip) {
		return fmt.Errorf("push endpoint resolves to %s, which is not a public address (SSF_ALLOW_PRIVATE_NETWORKS allows it)", ip)
	}
	return nil
}

// sharedAddressSpace is RFC 6598's carrier-grade NAT range, private too.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// pollURL is the poll endpoint of stream id.
func (t *Transmitter) pollURL(id string) string { return t.endpoint(PathPoll + id) }
