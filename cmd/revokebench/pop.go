package main

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/sessionguard/revoke/internal/proc"
)

// hubDomain is the hub's JetStream domain; the gateways of a point of
// presence reach its REVOCATIONS there, across their leaf node, to make
// their mirror (GATEWAY_HUB_DOMAIN).
const hubDomain = "hub"

// natsNode is a NATS leaf node of the run: a point of presence with a
// JetStream domain of its own.
type natsNode struct {
	name, domain, url string
	proc              *proc.Proc
}

// gatewayEnv places a gateway in the point of presence: it talks to the leaf
// only and follows the mirror of REVOCATIONS there, which it makes if it is
// missing.
func (n *natsNode) gatewayEnv() []string {
	return []string{"NATS_URL=" + n.url, "GATEWAY_JS_DOMAIN=" + n.domain, "GATEWAY_HUB_DOMAIN=" + hubDomain}
}

// startLeaf runs a leaf node of the hub (this binary's "nats" mode) whose
// JetStream domain is its name, storing in store (kept across restarts, so
// that a mirror resumes where it stopped), connected to the hub at remote
// (e.leafURL, or a relay's).
func (e *benchEnv) startLeaf(ctx context.Context, name, store, remote string) (*natsNode, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, err := e.spawn(ctx, name, nil, "nats", "-port", port, "-store", store, "-name", name, "-domain", name, "-leaf-remote", remote)
	if err != nil {
		return nil, err
	}
	n := &natsNode{name: name, domain: name, url: "nats://" + addr, proc: p}
	if err := e.waitNATS(n.url, p); err != nil {
		p.Stop()
		return nil, err
	}
	return n, nil
}

// startGateways starts the run's n gateways: on the hub, or spread over
// the points of presence of -topology pop.
func (e *benchEnv) startGateways(ctx context.Context, n int) error {
	for i := range n {
		var env []string
		if len(e.leaves) > 0 {
			env = e.leaves[i%len(e.leaves)].gatewayEnv()
		}
		g, err := e.startGateway(ctx, fmt.Sprintf("gatewayd-%d", i), env...)
		if err != nil {
			return err
		}
		e.gateways = append(e.gateways, g)
	}
	return nil
}

func (e *benchEnv) stopGateways() {
	for _, g := range e.gateways {
		g.proc.Stop()
	}
	e.gateways = nil
}

// relay is the WAN of a point of presence: this binary's "relay" mode
// between a leaf node and the hub's leaf port.
type relay struct {
	addr string
	proc *proc.Proc
}

func (e *benchEnv) startRelay(ctx context.Context, name, target string) (*relay, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := e.spawn(ctx, name, nil, "relay", "-listen", addr, "-target", target)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return &relay{addr: addr, proc: p}, nil
		}
	}
	p.Stop()
	return nil, fmt.Errorf("the relay %s never listened on %s (log in %s)", name, addr, e.dir)
}

// cut and heal the link; the relay acts on the signal at once.
func (r *relay) cut() error  { return r.proc.Signal(syscall.SIGUSR1) }
func (r *relay) heal() error { return r.proc.Signal(syscall.SIGUSR2) }
