// Package wanlink is a wide-area link between a NATS leaf node and its hub,
// on one machine: a TCP relay that can be cut (every connection closed,
// none accepted) and healed. The PoP tests and the load tool's partition
// scenario cut it.
package wanlink

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Link relays the connections made to its address to target.
type Link struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

// Listen opens a link on addr ("127.0.0.1:0" picks a port, kept across cuts)
// to target.
func Listen(addr, target string) (*Link, error) {
	l := &Link{addr: addr, target: target}
	if err := l.Heal(); err != nil {
		return nil, err
	}
	return l, nil
}

// Addr is the link's address (host:port), the same after a cut and a heal.
func (l *Link) Addr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

// Heal accepts connections again; a link that is up is left as it is.
func (l *Link) Heal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("wanlink: listen on %s: %w", l.addr, err)
	}
	l.ln, l.addr = ln, ln.Addr().String()
	go l.accept(ln)
	return nil
}

func (l *Link) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		if l.ln != ln { // cut while dialling
			l.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		l.conns = append(l.conns, c, up)
		l.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// Cut closes every connection and refuses new ones until Heal.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// Main is a link as a process of its own, configured by flags (args,
// without the program name), until ctx ends: SIGUSR1 cuts it, SIGUSR2
// heals it. The load tool's and the soak's "relay" mode.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
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
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2) // before it listens: callers signal once they can connect
	defer signal.Stop(sig)
	l, err := Listen(*listen, *target)
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
