package natsx_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/revoke/internal/natsx"
	"github.com/sessionguard/revoke/internal/testenv"
)

// TestAnUnreachableNATSIsNamed: an error met while NATS cannot be reached
// says which address was tried and why it failed, not only "context
// deadline exceeded"; the password in the URL is not repeated.
func TestAnUnreachableNATSIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	nc, err := natsx.Connect("nats://svc:s3cret@"+addr, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	<-ctx.Done()
	var got string
	testenv.Eventually(t, 10*time.Second, func() bool {
		got = natsx.Explain(nc, ctx.Err()).Error()
		return strings.Contains(got, "connection refused") // once a dial has failed
	}, "the error never says why the connection failed: %q", lazy(func() string { return got }))
	for _, want := range []string{"context deadline exceeded", addr, "not connected", "connection refused"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q does not say %q", got, want)
		}
	}
	if strings.Contains(got, "s3cret") {
		t.Errorf("%q repeats the password", got)
	}
	if natsx.Explain(nc, nil) != nil {
		t.Fatal("no error became one")
	}
}

// lazy is a message argument computed when the message is printed.
type lazy func() string

func (l lazy) String() string { return l() }
