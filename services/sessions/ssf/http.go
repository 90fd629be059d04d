package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/services/sessions"
)

// The transmitter's endpoints, under the issuer's path (SSF 1.0 section
// 7.2: the configuration's well-known path takes the issuer's path after
// it).
const (
	PathConfiguration = "/.well-known/ssf-configuration"
	PathJWKS          = "/ssf/jwks.json"
	PathStreams       = "/ssf/streams"
	PathStatus        = "/ssf/status"
	PathAddSubject    = "/ssf/subjects/add"
	PathRemoveSubject = "/ssf/subjects/remove"
	PathVerify        = "/ssf/verify"
	PathPoll          = "/ssf/poll/"
)

// Mount adds the transmitter's endpoints to r.
func (t *Transmitter) Mount(r chi.Router) {
	u, _ := url.Parse(t.base)
	base := u.Path
	r.Get(PathConfiguration+base, t.configuration)
	r.Get(base+PathJWKS, t.jwks)
	r.Group(func(r chi.Router) {
		r.Use(t.authenticate)
		r.With(scope(sessions.ScopeSSFManage, sessions.ScopeSSFRead)).Get(base+PathStreams, t.readStreams)
		r.With(scope(sessions.ScopeSSFManage)).Post(base+PathStreams, t.createStream)
		r.With(scope(sessions.ScopeSSFManage)).Patch(base+PathStreams, t.updateStream)
		r.With(scope(sessions.ScopeSSFManage)).Put(base+PathStreams, t.replaceStream)
		r.With(scope(sessions.ScopeSSFManage)).Delete(base+PathStreams, t.deleteStream)
		r.With(scope(sessions.ScopeSSFManage, sessions.ScopeSSFRead)).Get(base+PathStatus, t.readStatus)
		r.With(scope(sessions.ScopeSSFManage)).Post(base+PathStatus, t.updateStatus)
		r.With(scope(sessions.ScopeSSFManage)).Post(base+PathAddSubject, t.addSubject)
		r.With(scope(sessions.ScopeSSFManage)).Post(base+PathRemoveSubject, t.removeSubject)
		r.With(scope(sessions.ScopeSSFManage)).Post(base+PathVerify, t.verify)
		// A poll acknowledges, which releases SETs: a change.
		r.With(scope(sessions.ScopeSSFManage)).Post(base+PathPoll+"{stream_id}", t.poll)
	})
}

// Configuration is the transmitter's metadata (SSF 1.0 section 7.1).
type Configuration struct {
	SpecVersion              string              `json:"spec_version"`
	Issuer                   string              `json:"issuer"`
	JWKSURI                  string              `json:"jwks_uri"`
	DeliveryMethodsSupported []string            `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string              `json:"configuration_endpoint"`
	StatusEndpoint           string              `json:"status_endpoint"`
	AddSubjectEndpoint       string              `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string              `json:"remove_subject_endpoint"`
	VerificationEndpoint     string              `json:"verification_endpoint"`
	AuthorizationSchemes     []map[string]string `json:"authorization_schemes"`
	DefaultSubjects          string              `json:"default_subjects"`
}

// Configuration is what GET /.well-known/ssf-configuration answers.
func (t *Transmitter) Configuration() Configuration {
	return Configuration{
		SpecVersion: "1_0", Issuer: t.cfg.Issuer, JWKSURI: t.endpoint(PathJWKS),
		DeliveryMethodsSupported: []string{MethodPush, MethodPoll},
		ConfigurationEndpoint:    t.endpoint(PathStreams), StatusEndpoint: t.endpoint(PathStatus),
		AddSubjectEndpoint: t.endpoint(PathAddSubject), RemoveSubjectEndpoint: t.endpoint(PathRemoveSubject),
		VerificationEndpoint: t.endpoint(PathVerify),
		// No critical_subject_members: a receiver that acts on a
		// session-revoked event's user alone (ending every session of the
		// user) errs on the safe side, and must not be made to drop it.
		AuthorizationSchemes: []map[string]string{{"spec_urn": "urn:ietf:rfc:6749"}},
		DefaultSubjects:      "ALL",
	}
}

func (t *Transmitter) configuration(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, t.Configuration())
}

func (t *Transmitter) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(t.keys.JWKS())
}

type ctxKey struct{}

// client is the receiver a request authenticated as.
func client(r *http.Request) sessions.Client {
	c, _ := r.Context().Value(ctxKey{}).(sessions.Client)
	return c
}

// authenticate requires a client access token in the Authorization header
// (RFC 6750 section 2.1; never in the query, as the profile says).
func (t *Transmitter) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := httpx.BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ssf"`)
			httpx.WriteProblem(w, http.StatusUnauthorized, "unauthorized", "an access token of an API client is required (Authorization: Bearer, from POST /oauth2/token)")
			return
		}
		c, err := t.clients.ClientByToken(r.Context(), tok)
		if err != nil {
			t.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	})
}

// scope requires one of scopes of the token (RFC 6750 section 3.1).
func scope(scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := client(r)
			for _, s := range scopes {
				if c.Has(s) {
					next.ServeHTTP(w, r)
					return
				}
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q`, strings.Join(scopes, " ")))
			httpx.WriteProblem(w, http.StatusForbidden, "forbidden", "the access token does not hold the scope "+strings.Join(scopes, " or "))
		})
	}
}

// writeError answers err as a problem document with the status the SSF
// specification gives it (sessions.Explain's one table).
func (t *Transmitter) writeError(w http.ResponseWriter, r *http.Request, err error) {
	f := sessions.Explain(err)
	if f.Log {
		t.log.Log(r.Context(), f.LogLevel(), "request failed", slog.String("error", err.Error()),
			slog.String("request_id", httpx.RequestID(r.Context())), slog.String("path", r.URL.Path))
	}
	if f.RetryAfter > 0 {
		httpx.SetRetryAfter(w, f.RetryAfter)
	}
	if f.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	httpx.WriteProblem(w, f.Status, f.Slug, f.Detail)
}

// decode reads a JSON request body into dst. Unlike the session API, it
// ignores members it does not know: the SSF specifications let receivers
// send members a transmitter does not understand.
func decode(r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return sessions.Invalid("the body must be application/json")
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, httpx.MaxBody))
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return sessions.Invalid("the body is larger than %d bytes", httpx.MaxBody)
		}
		return sessions.Invalid("the body is not the JSON object expected: %v", err)
	}
	if dec.More() {
		return sessions.Invalid("the body holds more than one JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (t *Transmitter) createStream(w http.ResponseWriter, r *http.Request) {
	var in StreamInput
	if err := decode(r, &in); err != nil {
		t.writeError(w, r, err)
		return
	}
	st, err := t.CreateStream(r.Context(), client(r), in)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

// streamID is the stream_id query parameter, required.
func streamID(r *http.Request) (string, error) {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		return "", sessions.Invalid("the stream_id query parameter is required")
	}
	return id, nil
}

func (t *Transmitter) readStreams(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("stream_id") {
		sts, err := t.Streams(r.Context(), client(r))
		if err != nil {
			t.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, sts)
		return
	}
	id, err := streamID(r)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	st, err := t.Stream(r.Context(), client(r), id)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (t *Transmitter) updateStream(w http.ResponseWriter, r *http.Request) {
	t.changeStream(w, r, false)
}
func (t *Transmitter) replaceStream(w http.ResponseWriter, r *http.Request) {
	t.changeStream(w, r, true)
}

func (t *Transmitter) changeStream(w http.ResponseWriter, r *http.Request, replace bool) {
	var in StreamInput
	if err := decode(r, &in); err != nil {
		t.writeError(w, r, err)
		return
	}
	st, err := t.UpdateStream(r.Context(), client(r), in, replace)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (t *Transmitter) deleteStream(w http.ResponseWriter, r *http.Request) {
	id, err := streamID(r)
	if err == nil {
		err = t.DeleteStream(r.Context(), client(r), id)
	}
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *Transmitter) readStatus(w http.ResponseWriter, r *http.Request) {
	id, err := streamID(r)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	s, err := t.StreamStatus(r.Context(), client(r), id)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (t *Transmitter) updateStatus(w http.ResponseWriter, r *http.Request) {
	var in Status
	if err := decode(r, &in); err != nil {
		t.writeError(w, r, err)
		return
	}
	s, err := t.SetStreamStatus(r.Context(), client(r), in)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// subjectRequest is an add or remove subject request (SSF 1.0 sections
// 8.1.3.2, 8.1.3.3).
type subjectRequest struct {
	StreamID string          `json:"stream_id"`
	Subject  json.RawMessage `json:"subject"`
	Verified *bool           `json:"verified"`
}

func (t *Transmitter) addSubject(w http.ResponseWriter, r *http.Request) {
	var in subjectRequest
	if err := decode(r, &in); err != nil {
		t.writeError(w, r, err)
		return
	}
	if err := t.AddSubject(r.Context(), client(r), in.StreamID, in.Subject, in.Verified); err != nil {
		t.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (t *Transmitter) removeSubject(w http.ResponseWriter, r *http.Request) {
	var in subjectRequest
	if err := decode(r, &in); err != nil {
		t.writeError(w, r, err)
		return
	}
	if err := t.RemoveSubject(r.Context(), client(r), in.StreamID, in.Subject); err != nil {
		t.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *Transmitter) verify(w http.ResponseWriter, r *http.Request) {
	var in struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	if err := decode(r, &in); err != nil {
		t.writeError(w, r, err)
		return
	}
	if err := t.Verify(r.Context(), client(r), in.StreamID, in.State); err != nil {
		t.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *Transmitter) poll(w http.ResponseWriter, r *http.Request) {
	var in PollRequest
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			t.writeError(w, r, err)
			return
		}
	}
	out, err := t.Poll(r.Context(), client(r), chi.URLParam(r, "stream_id"), in)
	if err != nil {
		t.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
