package sessions

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/httpx"
)

// Routes returns every route of sessiond.
func (h *Handler) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(httpx.RequestIDMiddleware, httpx.Recover(h.log), httpx.AccessLog(h.log), h.instrument)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteProblem(w, http.StatusNotFound, "not-found", "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "method not allowed on this endpoint")
	})

	r.Get("/healthz", h.healthz)
	r.Get("/readyz", h.readyz)
	r.Method(http.MethodGet, "/metrics", h.metricsHandler())
	r.Get("/openapi.json", h.openAPI)
	r.Get("/.well-known/jwks.json", h.jwks)

	r.Post("/v1/auth/login", h.login)
	r.Post("/v1/auth/refresh", h.refresh)

	r.Group(func(r chi.Router) {
		r.Use(h.authenticate)
		r.Post("/v1/auth/logout", h.logout)

		r.Get("/v1/me/sessions", h.listOwn)
		r.Delete("/v1/me/sessions", h.revokeOthers)
		r.Delete("/v1/me/sessions/{id}", h.revokeOwn)

		r.Get("/v1/sessions", h.listSessions)
		r.Get("/v1/sessions/{id}", h.getSession)
		r.Delete("/v1/sessions/{id}", h.revokeSession)
		r.Delete("/v1/users/{id}/sessions", h.revokeUserSessions)

		r.Post("/v1/orgs", h.createOrg)
		r.Post("/v1/users", h.createUser)
		r.Patch("/v1/users/{id}", h.patchUser)

		r.Get("/v1/audit", h.listAudit)
	})

	h.portalRoutes(r)
	return r
}
