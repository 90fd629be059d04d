package wanlink

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echo is a TCP server that sends back each line it reads.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// TestALinkCutAndHealed: a link relays; cut, it drops the connection it
// carries and refuses new ones; healed, it relays again on the same address.
func TestALinkCutAndHealed(t *testing.T) {
	l, err := Listen("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Cut)
	addr := l.Addr()
	if err := roundTrip(addr); err != nil {
		t.Fatalf("through the link: %v", err)
	}
	open, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(open).ReadString('\n'); err != nil {
		t.Fatalf("an open connection before the cut: %v", err)
	}

	l.Cut()
	_ = open.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := open.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a connection across the cut still reads (%d bytes, %v), want it closed", n, err)
	}
	if err := roundTrip(addr); err == nil {
		t.Fatal("a new connection crossed the cut link")
	}

	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	if l.Addr() != addr {
		t.Fatalf("healed on %s, was %s", l.Addr(), addr)
	}
	if err := roundTrip(addr); err != nil {
		t.Fatalf("through the healed link: %v", err)
	}
	if err := l.Heal(); err != nil {
		t.Fatalf("healing a link that is up: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
