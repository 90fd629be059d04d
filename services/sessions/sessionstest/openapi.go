package sessionstest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/sessionguard/revoke/services/sessions/api"
)

// The API tests hold every request and answer against the description the
// server serves (api.OpenAPI), so that the description cannot drift from
// the code: an answer whose status, headers or body the description does
// not allow fails the test, and so does a 2xx answered to a request it does
// not allow (a request it forbids must be refused).

var spec struct {
	once   sync.Once
	router routers.Router
	err    error
}

func specRouter() (routers.Router, error) {
	spec.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
		if err != nil {
			spec.err = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			spec.err = err
			return
		}
		doc.Servers = nil // match on paths alone, whatever the test server's address
		// A member the server sends that the description does not name is
		// drift too: every object that lists its properties lists them all.
		no := false
		for _, ref := range doc.Components.Schemas {
			if s := ref.Value; s != nil && len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
				s.AdditionalProperties.Has = &no
			}
		}
		spec.router, spec.err = legacy.NewRouter(doc)
		// The media types of the API beside application/json.
		openapi3filter.RegisterBodyDecoder("application/problem+json", openapi3filter.JSONBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/jwk-set+json", openapi3filter.JSONBodyDecoder)
	})
	return spec.router, spec.err
}

// checkAgainstSpec holds one exchange against the description.
func checkAgainstSpec(t testing.TB, req *http.Request, body []byte, r Response) {
	t.Helper()
	router, err := specRouter()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	// A copy of the request, with its body, as the server received it.
	in := req.Clone(context.Background())
	in.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := router.FindRoute(in)
	if err != nil {
		// Not a path or method of the API: it must be answered 404 or 405.
		if r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
			t.Fatalf("%s %s is not in openapi.json, yet it was answered %d", req.Method, req.URL.Path, r.Status)
		}
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	reqInput := &openapi3filter.RequestValidationInput{Request: in, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), reqInput); err != nil && r.Status/100 == 2 {
		t.Fatalf("%s %s: openapi.json does not allow this request, yet it was answered %d: %v", req.Method, req.URL.Path, r.Status, err)
	}
	respInput := &openapi3filter.ResponseValidationInput{RequestValidationInput: reqInput, Status: r.Status, Header: r.Header,
		Body: io.NopCloser(bytes.NewReader(r.Body)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), respInput); err != nil {
		t.Fatalf("%s %s: the answer %d is not what openapi.json describes: %v\n%s", req.Method, req.URL.Path, r.Status, err, truncateBody(r.Body))
	}
}

func truncateBody(b []byte) string {
	s := string(b)
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return strings.TrimSpace(s)
}
