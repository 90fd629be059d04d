package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Mount adds every route of the API to r (a router from httpx.NewRouter).
func (h *Handler) Mount(r chi.Router) {
	r.Get("/healthz", h.healthz)
	r.Get("/readyz", h.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(h.gatherer, promhttp.HandlerOpts{}))
	r.Get("/openapi.json", h.openAPI)
	r.Get("/.well-known/jwks.json", h.jwks)

	r.Post("/v1/auth/login", h.login)
	r.Post("/v1/auth/refresh", h.refresh)
	r.Post("/oauth2/token", h.token)
	r.With(awaitable).Post("/oauth2/revoke", h.revokeToken)
	r.Post("/oauth2/introspect", h.introspect)

	r.Group(func(r chi.Router) {
		r.Use(h.authenticate, awaitable)
		r.Post("/v1/auth/logout", h.logout)

		r.Get("/v1/me", h.me)
		r.Get("/v1/me/activity", h.ownActivity)
		r.Get("/v1/me/sessions", h.listOwn)
		r.Delete("/v1/me/sessions", h.revokeOthers)
		r.Patch("/v1/me/sessions/{id}", h.renameOwn)
		r.Delete("/v1/me/sessions/{id}", h.revokeOwn)

		r.Get("/v1/sessions", h.listSessions)
		r.Get("/v1/sessions/{id}", h.getSession)
		r.Delete("/v1/sessions/{id}", h.revokeSession)
		r.Delete("/v1/users/{id}/sessions", h.revokeUserSessions)

		r.Get("/v1/orgs", h.listOrgs)
		r.Post("/v1/orgs", h.createOrg)
		r.Get("/v1/orgs/{id}/policy", h.getPolicy)
		r.Put("/v1/orgs/{id}/policy", h.putPolicy)
		r.Get("/v1/users", h.listUsers)
		r.Post("/v1/users", h.createUser)
		r.Get("/v1/users/{id}", h.getUser)
		r.Patch("/v1/users/{id}", h.patchUser)
		r.Delete("/v1/users/{id}/login-failures", h.clearLoginFailures)

		r.Get("/v1/audit", h.listAudit)

		r.Post("/v1/revocations", h.bulkRevoke)
		r.Get("/v1/revocations/{id}", h.getRevocation)
		r.Get("/v1/gateways", h.listGateways)

		r.Post("/v1/clients", h.createClient)
		r.Get("/v1/clients", h.listClients)
		r.Delete("/v1/clients/{id}", h.deleteClient)
	})
}
