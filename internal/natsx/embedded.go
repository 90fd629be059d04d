// Package natsx holds the NATS plumbing: an embedded JetStream server for the
// dev stack and the tests.
package natsx

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure an in-process NATS server.
type EmbeddedOptions struct {
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port
	StoreDir string // JetStream file store
	// A point of presence: Name names the server (each of a hub and its
	// leaf nodes needs its own), Domain its JetStream domain, LeafPort
	// accepts leaf nodes (a hub), LeafRemote is the hub's leaf URL this
	// server connects to as a leaf node.
	Name       string
	Domain     string
	LeafPort   int
	LeafRemote string
}

// StartEmbedded starts an in-process NATS server with JetStream enabled and
// waits until it accepts connections.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StoreDir == "" {
		return nil, errors.New("natsx: StoreDir is required")
	}
	opts := &server.Options{
		ServerName:      "revoke-embedded",
		Host:            o.Host,
		Port:            o.Port,
		JetStream:       true,
		JetStreamDomain: o.Domain,
		StoreDir:        o.StoreDir,
		NoSigs:          true,
		NoLog:           true,
	}
	if o.Name != "" {
		opts.ServerName = o.Name
	}
	if o.LeafPort != 0 {
		// NoAdvertise: leaf nodes reach the hub at the address they are
		// given (a load balancer's, a relay's), never at one the hub tells.
		opts.LeafNode = server.LeafNodeOpts{Host: o.Host, Port: o.LeafPort, NoAdvertise: true}
	}
	if o.LeafRemote != "" {
		u, err := url.Parse(o.LeafRemote)
		if err != nil {
			return nil, fmt.Errorf("natsx: leaf remote: %w", err)
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}
		opts.LeafNode.ReconnectInterval = 200 * time.Millisecond
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsx: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsx: embedded NATS server did not become ready")
	}
	return ns, nil
}
