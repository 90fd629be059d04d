package main

import (
	"context"
	"flag"
	"io"

	"github.com/sessionguard/revoke/internal/natsx"
)

// runNATS is the NATS JetStream server of the run, as a process of its own:
// inside the load tool it would share the tool's scheduler and garbage
// collector, and the tool's own work would delay the deliveries it times.
func runNATS(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "client port on 127.0.0.1")
	store := fs.String("store", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: *port, StoreDir: *store})
	if err != nil {
		return err
	}
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}
