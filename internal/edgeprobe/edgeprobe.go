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

// UntilRefused asks every gateway about token, then, every 100 µs, those
// that still accept it, until each has answered 401. It returns, per
// gateway, the time from start to reading that 401. An answer other than
// 200 or 401, or a gateway still accepting the token limit after start, is
// an error.
func (o *Observer) UntilRefused(start time.Time, token string, limit time.Duration) ([]time.Duration, error) {
	got := make([]time.Duration, len(o.conns))
	pending := make([]int, len(o.conns))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		if time.Since(start) > limit {
			return nil, fmt.Errorf("edgeprobe: %d gateways still accept the token %s after the start", len(pending), limit)
		}
		o.rounds++
		for _, i := range pending {
			req := "GET /v1/check HTTP/1.1\r\nHost: " + o.hosts[i] + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
			if _, err := io.WriteString(o.conns[i], req); err != nil {
				return nil, fmt.Errorf("edgeprobe: %s: %w", o.hosts[i], err)
			}
		}
		still := pending[:0]
		for _, i := range pending {
			resp, err := http.ReadResponse(o.rds[i], nil)
			if err != nil {
				return nil, fmt.Errorf("edgeprobe: %s: %w", o.hosts[i], err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				got[i] = time.Since(start)
			case http.StatusOK:
				still = append(still, i)
			default:
				return nil, fmt.Errorf("edgeprobe: %s answered %d", o.hosts[i], resp.StatusCode)
			}
		}
		if pending = still; len(pending) > 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	return got, nil
}
