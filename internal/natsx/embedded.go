// Package natsx holds the NATS plumbing: an embedded JetStream server for the
// dev stack and the tests.
package natsx

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure an in-process NATS server.
type EmbeddedOptions struct {
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port
	StoreDir string // JetStream file store
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
	ns, err := server.NewServer(&server.Options{
		ServerName: "revoke-embedded",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	})
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
