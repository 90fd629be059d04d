package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/wanlink"
)

// runNATS is a NATS JetStream server of the run, as a process of its own:
// inside the load tool it would share the tool's scheduler and garbage
// collector, and the tool's own work would delay the deliveries it times.
// The hub has a JetStream domain and takes leaf nodes; a leaf node (a
// point of presence) has a domain of its own and connects to the hub's
// leaf port.
func runNATS(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o natsx.EmbeddedOptions
	fs.IntVar(&o.Port, "port", 0, "client port on 127.0.0.1")
	fs.StringVar(&o.StoreDir, "store", "", "JetStream store directory")
	fs.StringVar(&o.Name, "name", "", "server name (each server of a hub and its leaf nodes needs its own)")
	fs.StringVar(&o.Domain, "domain", "", "JetStream domain")
	fs.IntVar(&o.LeafPort, "leaf-port", 0, "accept leaf nodes on this port (a hub)")
	fs.StringVar(&o.LeafRemote, "leaf-remote", "", "connect to this hub as a leaf node (nats-leaf://host:port)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := natsx.StartEmbedded(o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// runRelay is the WAN between a leaf node and its hub, as a process of its
// own: SIGUSR1 cuts it (every connection closed, none accepted), SIGUSR2
// heals it.
func runRelay(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on (host:port)")
	target := fs.String("target", "", "address to relay to (host:port)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *target == "" {
		return fmt.Errorf("relay needs -listen and -target")
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2) // before it listens: the tool signals once it can connect
	defer signal.Stop(sig)
	l, err := wanlink.Listen(*listen, *target)
	if err != nil {
		return err
	}
	defer l.Cut()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				l.Cut()
				fmt.Fprintln(stderr, "relay: cut")
				continue
			}
			if err := l.Heal(); err != nil {
				return err
			}
			fmt.Fprintln(stderr, "relay: healed")
		}
	}
}
