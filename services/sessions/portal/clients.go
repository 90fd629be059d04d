package portal

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/ssf"
)

// Signals is the Shared Signals transmitter as the Clients and streams
// page uses it (ssf.Transmitter).
type Signals interface {
	AdminStreams(ctx context.Context, p sessions.Principal) ([]ssf.AdminStream, error)
	AdminVerify(ctx context.Context, p sessions.Principal, id string) error
	AdminSetStatus(ctx context.Context, p sessions.Principal, id, status string) error
}

// clientsPage is the Clients and streams page: the API clients in scope,
// the form that creates one (and, right after, its secret, shown once),
// and every stream of those clients with how its delivery goes.
type clientsPage struct {
	Clients []sessions.Client
	Streams []ssf.AdminStream
	Orgs    []sessions.Org
	OrgName map[string]string
	Global  bool // the viewer may create clients of every org
	// Created is the client just created, with its secret.
	Created *sessions.Client
	Secret  string
	// NoTransmitter: this sessiond runs no transmitter (a test).
	NoTransmitter bool
}

// adminClients shows the page (GET) and creates a client (POST).
func (h *Portal) adminClients(w http.ResponseWriter, r *http.Request, v *viewer) {
	page := clientsPage{Global: v.Principal.Role == "global_admin", OrgName: map[string]string{}}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		in := sessions.NewClient{Name: r.PostForm.Get("name"), OrgID: r.PostForm.Get("org_id"), Scopes: r.PostForm["scope"]}
		c, secret, err := h.svc.CreateClient(r.Context(), v.Principal, in, h.meta(r))
		if err != nil {
			h.portalFail(w, r, areaAdmin, v, err)
			return
		}
		page.Created, page.Secret, status = &c, secret, http.StatusCreated
	}
	var err error
	if page.Orgs, err = h.svc.OrgsInScope(r.Context(), v.Principal); err == nil {
		page.Clients, err = h.svc.ListClients(r.Context(), v.Principal)
	}
	if err == nil && h.signals != nil {
		page.Streams, err = h.signals.AdminStreams(r.Context(), v.Principal)
	}
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	page.NoTransmitter = h.signals == nil
	for _, o := range page.Orgs {
		page.OrgName[o.ID] = o.Name
	}
	h.render(w, r, status, "admin_clients", pageData{Title: "Clients and streams", Area: areaAdmin, Nav: "clients", Viewer: v, Page: page})
}

// adminDeleteClient deletes an API client: its tokens and streams end.
func (h *Portal) adminDeleteClient(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := h.svc.DeleteClient(r.Context(), v.Principal, chi.URLParam(r, "id"), h.meta(r)); err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	h.redirectWith(w, r, "/admin/clients", "ok", "The client is deleted: its secret and tokens no longer work, and its streams are gone.")
}

// adminStreamAction sends a verification or changes a stream's status.
func (h *Portal) adminStreamAction(w http.ResponseWriter, r *http.Request, v *viewer) {
	if h.signals == nil {
		h.portalFail(w, r, areaAdmin, v, sessions.Invalid("this sessiond runs no Shared Signals transmitter"))
		return
	}
	id := chi.URLParam(r, "id")
	var (
		err error
		msg string
	)
	switch action := r.PostForm.Get("action"); action {
	case "verify":
		err = h.signals.AdminVerify(r.Context(), v.Principal, id)
		msg = "A verification event is on its way to the receiver."
	case ssf.StatusEnabled, ssf.StatusPaused, ssf.StatusDisabled:
		err = h.signals.AdminSetStatus(r.Context(), v.Principal, id, action)
		msg = "The stream is " + action + "; its receiver is told so (stream-updated)."
		if action == ssf.StatusDisabled {
			msg = "The stream is disabled: its events are dropped until it is enabled. Its receiver is told so (stream-updated)."
		}
	default:
		err = sessions.Invalid("unknown action %q", strings.TrimSpace(action))
	}
	if err != nil {
		h.portalFail(w, r, areaAdmin, v, err)
		return
	}
	h.redirectWith(w, r, "/admin/clients", "ok", msg)
}
