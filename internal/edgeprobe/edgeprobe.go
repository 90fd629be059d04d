// Package edgeprobe watches gateways start refusing a token: the observer of
// the propagation benchmarks (cmd/devstack's BenchmarkRevokeToRefusal and
// cmd/revokebench).
//
// It is one goroutine with one keep-alive HTTP/1.1 connection per gateway,
// and it sends its request to every gateway before it reads any answer. On
// a machine that also runs the gateways, an observer with a goroutine and a
// net/http client per gateway spent more of the cores than the path it
// measured: its first poll, already a 401 at nearly every gateway, took
// 2 ms to come back on two cores.
//
// Rounds are 100 µs apart, and on Linux that pause is kept short with the kernel's
// high-resolution sleep (about 180 µs on the benchmark machine).
// time.Sleep(100 * time.Microsecond) sleeps about 1.1 ms there, as Go timers
// wake through the network poller, whose wait has a millisecond resolution
// on Linux: a gateway that had not refused in the first round was timed a
// millisecond late. Without any pause, the rounds take the cores from the
// gateways exactly when their delivery is late: the p99 rose by 1.5 ms.
package edgeprobe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Observer asks gateways' forward-auth endpoint (GET /v1/check) about a
// token. It is not safe for concurrent use.
type Observer struct {
	hosts  []string
	conns  []net.Conn
	rds    []*bufio.Reader
	rounds int
}

// Dial connects to each gateway control listener (e.g.
// http://127.0.0.1:8081).
func Dial(controls []string) (*Observer, error) {
	o := &Observer{}
	for _, c := range controls {
		u, err := url.Parse(c)
		if err != nil {
			o.Close()
			return nil, err
		}
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			o.Close()
			return nil, err
		}
		o.hosts, o.conns, o.rds = append(o.hosts, u.Host), append(o.conns, conn), append(o.rds, bufio.NewReader(conn))
	}
	return o, nil
}

// Close closes the connections.
func (o *Observer) Close() error {
	var errs []error
	for _, c := range o.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Rounds is how many rounds of requests UntilRefused has sent so far.
func (o *Observer) Rounds() int { return o.rounds }

// roundPause separates the rounds of UntilRefused.
const roundPause = 100 * time.Microsecond

// UntilRefused asks every gateway about token, then, every roundPause,
// those that still accept it, until each has answered 401. It returns, per
// gateway, the time from start to reading that 401. An answer other than
// 200 or 401, or a gateway still accepting the token limit after start, is
// an error.
func (o *Observer) UntilRefused(start time.Time, token string, limit time.Duration) ([]time.Duration, error) {
	got, pending := make([]time.Duration, len(o.conns)), o.all()
	for len(pending) > 0 {
		if time.Since(start) > limit {
			return nil, fmt.Errorf("edgeprobe: %d gateways still accept the token %s after the start", len(pending), limit)
		}
		o.rounds++
		codes, at, err := o.round(pending, token)
		if err != nil {
			return nil, err
		}
		still := pending[:0]
		for k, i := range pending {
			switch codes[k] {
			case http.StatusUnauthorized:
				got[i] = at[k].Sub(start)
			case http.StatusOK:
				still = append(still, i)
			default:
				return nil, fmt.Errorf("edgeprobe: %s answered %d", o.hosts[i], codes[k])
			}
		}
		if pending = still; len(pending) > 0 {
			Pause(roundPause)
		}
	}
	return got, nil
}

// Once asks every gateway once about token and returns how many accepted it
// (answered 200).
func (o *Observer) Once(token string) (int, error) {
	codes, _, err := o.round(o.all(), token)
	n := 0
	for _, c := range codes {
		if c == http.StatusOK {
			n++
		}
	}
	return n, err
}

// all is the index of every gateway.
func (o *Observer) all() []int {
	idx := make([]int, len(o.conns))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// round sends a check of token to each gateway in which, all before reading
// any answer, and returns their status codes in the same order, with the
// time each was read.
func (o *Observer) round(which []int, token string) ([]int, []time.Time, error) {
	for _, i := range which {
		req := "GET /v1/check HTTP/1.1\r\nHost: " + o.hosts[i] + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
		if _, err := io.WriteString(o.conns[i], req); err != nil {
			return nil, nil, fmt.Errorf("edgeprobe: %s: %w", o.hosts[i], err)
		}
	}
	codes, at := make([]int, len(which)), make([]time.Time, len(which))
	for k, i := range which {
		resp, err := http.ReadResponse(o.rds[i], nil)
		if err != nil {
			return nil, nil, fmt.Errorf("edgeprobe: %s: %w", o.hosts[i], err)
		}
		at[k] = time.Now()
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[k] = resp.StatusCode
	}
	return codes, at, nil
}
