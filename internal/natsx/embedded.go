// Package natsx holds the NATS plumbing: an embedded JetStream server for the
// dev stack and the tests.
package natsx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
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
	// A cluster: Cluster names it, ClusterPort takes the other nodes'
	// routes, Routes are theirs (nats-route://host:port). JetStream
	// replicates across it (R3 streams need three nodes).
	Cluster     string
	ClusterPort int
	Routes      []string
	// SyncInterval is how often JetStream syncs its store to disk (zero:
	// the server's default, 2 minutes); SyncAlways syncs every write.
	SyncInterval time.Duration
	SyncAlways   bool
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
		SyncInterval:    o.SyncInterval,
		SyncAlways:      o.SyncAlways,
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
		// Several URLs (comma-separated): the hub cluster's nodes.
		var urls []*url.URL
		for _, r := range strings.Split(o.LeafRemote, ",") {
			u, err := url.Parse(strings.TrimSpace(r))
			if err != nil {
				return nil, fmt.Errorf("natsx: leaf remote: %w", err)
			}
			urls = append(urls, u)
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: urls}}
		opts.LeafNode.ReconnectInterval = 200 * time.Millisecond
	}
	if o.ClusterPort != 0 {
		opts.Cluster = server.ClusterOpts{Name: o.Cluster, Host: o.Host, Port: o.ClusterPort}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("natsx: route: %w", err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsx: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsx: embedded NATS server did not become ready")
	}
	return ns, nil
}

// Main is a NATS JetStream server as a process of its own, configured by
// flags (args, without the program name), until ctx ends: the load tool's
// and the soak's "nats" mode. Inside those tools it would share their
// scheduler and garbage collector, and their own work would delay what
// they time or break.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o EmbeddedOptions
	var routes, sync string
	fs.IntVar(&o.Port, "port", 0, "client port on 127.0.0.1")
	fs.StringVar(&o.StoreDir, "store", "", "JetStream store directory")
	fs.StringVar(&o.Name, "name", "", "server name (each server of a cluster, a hub and its leaf nodes needs its own)")
	fs.StringVar(&o.Domain, "domain", "", "JetStream domain")
	fs.IntVar(&o.LeafPort, "leaf-port", 0, "accept leaf nodes on this port (a hub)")
	fs.StringVar(&o.LeafRemote, "leaf-remote", "", "connect to this hub as a leaf node (nats-leaf://host:port, comma-separated for a cluster)")
	fs.StringVar(&o.Cluster, "cluster", "", "cluster name")
	fs.IntVar(&o.ClusterPort, "cluster-port", 0, "route port of this cluster node")
	fs.StringVar(&routes, "routes", "", "the other nodes' routes, comma-separated (nats-route://host:port)")
	fs.StringVar(&sync, "sync", "", "how often JetStream syncs its store: a duration, or always (default: the server's, 2m)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch sync {
	case "":
	case "always":
		o.SyncAlways = true
	default:
		d, err := time.ParseDuration(sync)
		if err != nil || d <= 0 {
			return fmt.Errorf("nats: -sync %q is neither a positive duration nor always", sync)
		}
		o.SyncInterval = d
	}
	for _, r := range strings.Split(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			o.Routes = append(o.Routes, r)
		}
	}
	ns, err := StartEmbedded(o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}
