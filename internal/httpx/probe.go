package httpx

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// LocalURL is the http URL of path on a listen address (":8080",
// "0.0.0.0:8080", "[::]:9091" or "10.0.0.5:8080"), reached from the same
// host: an address that listens everywhere is asked on 127.0.0.1.
func LocalURL(addr, path string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + path
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path
}

// Probe asks url once, within three seconds, and is nil only for a 200:
// the healthcheck subcommand of the binaries, for images without a shell.
func Probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}
