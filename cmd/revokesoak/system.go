package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionguard/revoke/events"
	"github.com/sessionguard/revoke/internal/pgserver"
	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/proc"
)

const (
	issuer        = "http://revokesoak.local"
	adminEmail    = "soak-admin@example.com"
	adminPassword = "soak-admin-password"
	hubDomain     = "hub"
	popDomain     = "pop"
)

// system is everything the soak runs, each part a process of its own:
// PostgreSQL, a three-node NATS JetStream cluster (R3 streams) whose
// leaf node is a point of presence behind three relays (the WAN), two
// sessiond replicas and four gateways, two on the hub and two in the PoP.
type system struct {
	dir    string
	log    io.Writer
	client *http.Client

	pgMu sync.Mutex
	pg   *pgserver.Server
	pgDB string

	nats     []*proc.Proc // nats-1..3
	natsURLs []string
	leaf     *proc.Proc
	leafURL  string
	relays   []*proc.Proc // one per hub node, between it and the leaf

	sessiond []*service // sessiond-1, sessiond-2
	gateways []*service // gateway-1..4; 3 and 4 in the PoP

	nc *nats.Conn // the soak's own, to the cluster
	js jetstream.JetStream

	slow *slowDisk // the nemesis's slow disk for a NATS node

	closed sync.Once
}

// service is a sessiond or gatewayd process and where it answers.
type service struct {
	name  string
	p     *proc.Proc
	base  string // sessiond: its API; gatewayd: its control address
	ready string // its readiness URL
	debug string // gatewayd: its debug listener, where its clock is stepped
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func startSystem(ctx context.Context, dir, binDir string, staleness time.Duration, logw io.Writer) (_ *system, err error) {
	s := &system{dir: dir, log: logw, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if s.pg, err = pgserver.Start(ctx, filepath.Join(dir, "pg"), pgserver.Options{}); err != nil {
		return nil, err
	}
	s.pgDB = s.pg.URL("revoke")
	if err := postgres.CreateDatabase(ctx, s.pg.URL("postgres"), "revoke", "", false); err != nil {
		return nil, err
	}
	pool, err := postgres.Connect(ctx, s.pgDB)
	if err != nil {
		return nil, err
	}
	_, err = postgres.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		return nil, err
	}

	s.slow = newSlowDisk(dir, "revokesoak-"+filepath.Base(dir))
	if s.slow.dir == "" {
		fmt.Fprintf(logw, "soak: the slow-disk fault is unavailable here: %s\n", s.slow.reason)
	}
	// The hub: three nodes that route to one another and take the leaf.
	// They sync their stores every second, as an operator who wants every
	// write on disk within a second would (and a slow disk is felt there).
	addrs, err := proc.FreeAddrs(9)
	if err != nil {
		return nil, err
	}
	clients, routes, leafPorts := addrs[0:3], addrs[3:6], addrs[6:9]
	for i := range 3 {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats-route://"+r)
			}
		}
		name := fmt.Sprintf("nats-%d", i+1)
		p, err := proc.Start(proc.Spec{Name: name, Bin: self, Log: filepath.Join(dir, name+".log"), Args: []string{"nats",
			"-port", port(clients[i]), "-store", filepath.Join(dir, name), "-name", name, "-domain", hubDomain,
			"-cluster", "soak", "-cluster-port", port(routes[i]), "-routes", strings.Join(others, ","), "-leaf-port", port(leafPorts[i]), "-sync", "1s"}})
		if err != nil {
			return nil, err
		}
		s.nats = append(s.nats, p)
		s.natsURLs = append(s.natsURLs, "nats://"+clients[i])
	}
	for i, p := range s.nats {
		if err := waitNATS(ctx, p, s.natsURLs[i]); err != nil {
			return nil, err
		}
	}
	// The PoP: its leaf node reaches each hub node through a relay.
	var remotes []string
	for i, l := range leafPorts {
		a, err := proc.FreeAddr()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("relay-%d", i+1)
		p, err := proc.Start(proc.Spec{Name: name, Bin: self, Log: filepath.Join(dir, name+".log"), Args: []string{"relay", "-listen", a, "-target", l}})
		if err != nil {
			return nil, err
		}
		s.relays = append(s.relays, p)
		remotes = append(remotes, "nats-leaf://"+a)
	}
	leafAddr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	s.leafURL = "nats://" + leafAddr
	if s.leaf, err = proc.Start(proc.Spec{Name: "leaf", Bin: self, Log: filepath.Join(dir, "leaf.log"), Args: []string{"nats",
		"-port", port(leafAddr), "-store", filepath.Join(dir, "leaf"), "-name", "leaf", "-domain", popDomain, "-leaf-remote", strings.Join(remotes, ",")}}); err != nil {
		return nil, err
	}
	if err := waitNATS(ctx, s.leaf, s.leafURL); err != nil {
		return nil, err
	}
	if s.nc, err = nats.Connect(strings.Join(s.natsURLs, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond)); err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, err
	}

	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for i := range 2 {
		addr, err := proc.FreeAddr()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("sessiond-%d", i+1)
		p, err := proc.Start(proc.Spec{Name: name, Bin: filepath.Join(binDir, "sessiond"), Log: filepath.Join(dir, name+".log"), Env: []string{
			"DATABASE_URL=" + s.pgDB, "NATS_URL=" + strings.Join(s.natsURLs, ","), "NATS_STREAM_REPLICAS=3", "SESSIOND_ADDR=" + addr,
			"KEY_ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(kek), "ISSUER=" + issuer,
			"BOOTSTRAP_ADMIN_EMAIL=" + adminEmail, "BOOTSTRAP_ADMIN_PASSWORD=" + adminPassword,
			"LOGIN_RATE_LIMIT=1000000/1m", "LOGIN_IP_RATE_LIMIT=1000000/1m", "REFRESH_REUSE_GRACE=1s",
			"GATEWAY_SILENCE_TIMEOUT=10s", "LOG_LEVEL=info",
		}})
		if err != nil {
			return nil, err
		}
		sv := &service{name: name, p: p, base: "http://" + addr, ready: "http://" + addr + "/readyz"}
		s.sessiond = append(s.sessiond, sv)
		if err := p.WaitHTTP(ctx, s.client, sv.ready, 2*time.Minute); err != nil {
			return nil, err
		}
	}
	for i := range 4 {
		ports, err := proc.FreeAddrs(3)
		if err != nil {
			return nil, err
		}
		proxy, control, debug := ports[0], ports[1], ports[2]
		name := fmt.Sprintf("gateway-%d", i+1)
		env := []string{
			"JWKS_URL=" + s.sessiond[i%2].base + "/.well-known/jwks.json", "GATEWAY_UPSTREAM=http://127.0.0.1:9",
			"GATEWAY_ADDR=" + proxy, "GATEWAY_CONTROL_ADDR=" + control, "ISSUER=" + issuer, "GATEWAY_NAME=" + name,
			"GATEWAY_MAX_STALENESS=" + staleness.String(), "LOG_LEVEL=info",
			"DEBUG_ADDR=" + debug, "DEBUG_CLOCK_OFFSET=0s", // a restart starts on a true clock
		}
		if i < 2 {
			env = append(env, "NATS_URL="+strings.Join(s.natsURLs, ","))
		} else {
			env = append(env, "NATS_URL="+s.leafURL, "GATEWAY_JS_DOMAIN="+popDomain, "GATEWAY_HUB_DOMAIN="+hubDomain)
		}
		p, err := proc.Start(proc.Spec{Name: name, Bin: filepath.Join(binDir, "gatewayd"), Log: filepath.Join(dir, name+".log"), Env: env})
		if err != nil {
			return nil, err
		}
		sv := &service{name: name, p: p, base: "http://" + control, ready: "http://" + control + "/readyz", debug: "http://" + debug}
		s.gateways = append(s.gateways, sv)
	}
	for _, g := range s.gateways {
		if err := g.p.WaitHTTP(ctx, s.client, g.ready, 2*time.Minute); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func waitNATS(ctx context.Context, p *proc.Proc, url string) error {
	return p.WaitFor(ctx, time.Minute, func() bool {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
}

// close stops everything (once).
func (s *system) close() { s.closed.Do(s.stop) }

func (s *system) stop() {
	for _, g := range s.gateways {
		g.p.Stop()
	}
	for _, sd := range s.sessiond {
		sd.p.Stop()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	s.leaf.Stop()
	for _, r := range s.relays {
		r.Stop()
	}
	for _, n := range s.nats {
		n.Stop()
	}
	s.pgMu.Lock()
	if s.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = s.pg.Stop(ctx)
		cancel()
	}
	s.pgMu.Unlock()
	if s.slow != nil {
		s.slow.close()
	}
}

// ok reports whether url answers 200.
func (s *system) ok(ctx context.Context, url string) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := s.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// unhealthy names the first part of the system that is not healthy ("":
// all are): every stream sessiond keeps led with every replica current,
// every sessiond and gateway ready.
func (s *system) unhealthy(ctx context.Context) string {
	for _, name := range []string{events.StreamRevocations, events.StreamIdentity, events.StreamSessions} {
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := s.js.Stream(ictx, name)
		if err != nil {
			cancel()
			return "stream " + name + ": " + shortErr(err)
		}
		info, err := st.Info(ictx)
		cancel()
		switch {
		case err != nil:
			return "stream " + name + ": " + shortErr(err)
		case info.Cluster == nil || info.Cluster.Leader == "":
			return "stream " + name + ": no leader"
		case len(info.Cluster.Replicas) != 2:
			return fmt.Sprintf("stream %s: %d replicas besides the leader", name, len(info.Cluster.Replicas))
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return "stream " + name + ": replica " + r.Name + " not current"
			}
		}
	}
	for _, sv := range append(append([]*service(nil), s.sessiond...), s.gateways...) {
		if !s.ok(ctx, sv.ready) {
			return sv.name + " not ready"
		}
	}
	return ""
}

// healthy is the whole system back.
func (s *system) healthy(ctx context.Context) bool { return s.unhealthy(ctx) == "" }

// restartPostgres stops PostgreSQL (fast: open transactions roll back) and
// starts it again on the same data.
func (s *system) stopPostgres(ctx context.Context) error {
	s.pgMu.Lock()
	defer s.pgMu.Unlock()
	return s.pg.Stop(ctx)
}

func (s *system) startPostgres(ctx context.Context) error {
	s.pgMu.Lock()
	defer s.pgMu.Unlock()
	pg, err := pgserver.Start(ctx, s.pg.Dir(), pgserver.Options{})
	if err != nil {
		return err
	}
	s.pg = pg
	return nil
}
