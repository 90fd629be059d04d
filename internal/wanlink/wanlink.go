// Package wanlink is a wide-area link between a NATS leaf node and its hub,
// on one machine: a TCP relay that can be cut (every connection closed,
// none accepted) and healed. The PoP tests and the load tool's partition
// scenario cut it.
package wanlink

import (
	"fmt"
	"io"
	"net"
	"sync"
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
