package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/services/sessions/api"
	"github.com/sessionguard/revoke/services/sessions/ssf"
)

// TestOpenAPIDescribesEveryRoute keeps /openapi.json and routes.go in step.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	r := chi.NewRouter()
	api.NewHandler(nil, nil, nil, prometheus.NewRegistry(), nil, nil).Mount(r)
	// The Shared Signals transmitter is served beside the API, and described
	// with it.
	tr, err := ssf.New(nil, nil, nil, nil, nil, make([]byte, 32), ssf.DefaultConfig("http://sessiond.test"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.Mount(r)
	routes := map[string]bool{}
	err = chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/admin") || strings.HasPrefix(route, "/account") {
			return nil // the HTML portal, not part of the JSON API
		}
		key := strings.ToLower(method) + " " + route
		routes[key] = true
		if _, ok := doc.Paths[route][strings.ToLower(method)]; !ok {
			t.Errorf("route %s %s is not in openapi.json", method, route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			if !routes[method+" "+path] {
				t.Errorf("openapi.json describes %s %s, which is not routed", method, path)
			}
		}
	}
}
