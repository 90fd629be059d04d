// Package demo is the dev stack's demo upstream: it answers every request
// with the X-Auth-* headers it received, as JSON, to show what the gateway
// passes on.
package demo

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Upstream echoes the identity headers of each request.
func Upstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := map[string]string{}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Auth-") {
				auth[k] = strings.Join(v, ", ")
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"message": "hello from the demo upstream",
			"method":  r.Method,
			"path":    r.URL.Path,
			"auth":    auth,
		})
	})
}
