package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain lets the test binary stand in for revokesoak in its other
// modes (NATS, the relay), as the soak starts them from its own binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "nats" || os.Args[1] == "relay") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := run(ctx, append([]string{"revokesoak"}, os.Args[1:]...), os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
