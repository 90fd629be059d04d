package portal

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sessionguard/revoke/internal/httpx"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/receipts"
)

// The portal: the admin pages under /admin/ and the user's own sessions page
// under /account/sessions, server-rendered from the templates and the one
// stylesheet (plus a few lines of optional JavaScript) embedded below.
//
// A signed-in browser holds the session's access token and refresh token in
// two HttpOnly, SameSite=Strict cookies; unless PORTAL_COOKIE_SECURE is
// false they are also Secure and named with the __Host- prefix, so no
// subdomain can plant them. Every page authenticates the access token
// exactly like the API does; when it has expired (or its cookie is gone) the
// page refreshes the pair with the refresh token and sets both cookies anew,
// so a portal session lasts as long as the session's refresh token. A
// revoked session fails both and sends the browser to the sign-in page.
//
// Every POST form carries a CSRF token: on signed-in pages an HMAC of the
// session id under a key derived from KEY_ENCRYPTION_KEY (so replicas agree
// and a token is worthless for any other session); on the sign-in form a
// signed double-submit cookie. A POST whose token does not match gets 403.

//go:embed web
var webFS embed.FS

// Config configures the portal.
type Config struct {
	// InsecureCookies leaves the Secure flag and the __Host- prefix off
	// the portal's cookies: only for a plain-http development setup.
	InsecureCookies bool
	// KEK is the key-encryption key; the CSRF key is derived from it, so
	// that a form rendered by one replica validates on another. Without it
	// the key is random.
	KEK []byte
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed for the client's address.
	TrustedProxies []netip.Prefix
	// Signals is the Shared Signals transmitter the Clients and streams
	// page shows; nil where none runs.
	Signals Signals
}

// Portal serves the portal's pages.
type Portal struct {
	svc      *sessions.Service
	receipts *receipts.Store
	log      *slog.Logger
	trusted  []netip.Prefix
	secure   bool
	csrfKey  []byte
	pages    map[string]*template.Template
	static   http.Handler
	signals  Signals
}

// The portal's pages, each a template file under web/templates rendered
// inside layout.html.
var portalPages = []string{"signin", "admin_sessions", "admin_user", "admin_gateways", "admin_revoke", "admin_users", "admin_policy", "admin_clients", "account_sessions", "error"}

// New returns the portal of svc, telling each action's outcome at the
// gateways from rc.
func New(svc *sessions.Service, rc *receipts.Store, cfg Config, log *slog.Logger) *Portal {
	p := &Portal{svc: svc, receipts: rc, log: log, trusted: cfg.TrustedProxies, secure: !cfg.InsecureCookies, pages: map[string]*template.Template{},
		signals: cfg.Signals}
	if len(cfg.KEK) > 0 {
		p.csrfKey = sessions.DeriveKey(cfg.KEK, "portal-csrf")
	} else {
		p.csrfKey = make([]byte, 32)
		_, _ = rand.Read(p.csrfKey)
	}
	funcs := template.FuncMap{
		"rel":    relativeTime,
		"exact":  exactTime,
		"ua":     sessions.ClientLabel,
		"device": sessions.DeviceLabel,
		"action": actionLabel,
		"reason": reasonLabel,
		"str": func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		},
		"state": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
		"lag": func(g receipts.Gateway) string {
			if g.StreamLastSeq <= g.AppliedSeq {
				return "none"
			}
			return plural(int(g.StreamLastSeq-g.AppliedSeq), "event")
		},
		"short": func(id string) string {
			if len(id) > 8 {
				return id[:8]
			}
			return id
		},
	}
	for _, name := range portalPages {
		// The templates are part of the binary: a parse error is a bug
		// that every test finds.
		p.pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(webFS,
			"web/templates/layout.html", "web/templates/partials.html", "web/templates/"+name+".html"))
	}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		panic(err)
	}
	p.static = http.StripPrefix("/admin/static/", http.FileServerFS(static))
	return p
}

// Mount adds the portal's pages to r: /admin/ and /account/.
func (h *Portal) Mount(r chi.Router) {
	h.area(r, areaAdmin, func(r chi.Router) {
		r.Get("/static/*", h.portalStatic)
		r.Get("/", h.signedIn(areaAdmin, true, h.adminSessions))
		r.Get("/users", h.signedIn(areaAdmin, true, h.adminUsers))
		r.Get("/users/{id}", h.signedIn(areaAdmin, true, h.adminUser))
		r.Post("/users/{id}/unlock", h.signedIn(areaAdmin, true, h.adminUnlock))
		r.Get("/gateways", h.signedIn(areaAdmin, true, h.adminGateways))
		r.Get("/clients", h.signedIn(areaAdmin, true, h.adminClients))
		r.Post("/clients", h.signedIn(areaAdmin, true, h.adminClients))
		r.Post("/clients/{id}/delete", h.signedIn(areaAdmin, true, h.adminDeleteClient))
		r.Post("/streams/{id}", h.signedIn(areaAdmin, true, h.adminStreamAction))
		r.Get("/policy", h.signedIn(areaAdmin, true, h.adminPolicy))
		r.Post("/policy", h.signedIn(areaAdmin, true, h.adminPolicy))
		r.Get("/revoke", h.signedIn(areaAdmin, true, h.adminRevokeByRule))
		r.Post("/revoke", h.signedIn(areaAdmin, true, h.adminRevokeByRule))
		r.Post("/sessions/{id}/revoke", h.signedIn(areaAdmin, true, h.adminRevokeSession))
		r.Post("/users/{id}/revoke-sessions", h.signedIn(areaAdmin, true, h.adminRevokeUser))
		r.Post("/users/{id}/disable", h.signedIn(areaAdmin, true, h.adminSetDisabled(true)))
		r.Post("/users/{id}/enable", h.signedIn(areaAdmin, true, h.adminSetDisabled(false)))
	})
	h.area(r, areaAccount, func(r chi.Router) {
		r.Get("/", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, areaAccount.home(), http.StatusSeeOther)
		})
		r.Get("/sessions", h.signedIn(areaAccount, false, h.accountSessions))
		r.Post("/sessions/revoke-others", h.signedIn(areaAccount, false, h.accountRevokeOthers))
		r.Post("/sessions/{id}/revoke", h.signedIn(areaAccount, false, h.accountRevoke))
	})
}

// area mounts one area of the portal: its security headers, its error
// pages, its sign-in and sign-out, and the pages that pages adds.
func (h *Portal) area(r chi.Router, a area, pages func(chi.Router)) {
	r.Route("/"+string(a), func(r chi.Router) {
		r.Use(portalHeaders)
		r.NotFound(h.portalNotFound)
		r.MethodNotAllowed(h.portalMethodNotAllowed)
		r.Get("/signin", h.signinPage(a))
		r.Post("/signin", h.signin(a))
		r.Post("/signout", h.signedIn(a, false, h.signout))
		pages(r)
	})
}

// area is the part of the portal a page belongs to: where its sign-in and
// sign-out lead.
type area string

const (
	areaAdmin   area = "admin"
	areaAccount area = "account"
)

func (a area) signin() string { return "/" + string(a) + "/signin" }

func (a area) home() string {
	if a == areaAdmin {
		return "/admin/"
	}
	return "/account/sessions"
}

// portalCSP allows the page's own stylesheet and script and nothing else:
// no inline script or style, no framing, forms post to this origin only.
const portalCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

func (h *Portal) meta(r *http.Request) sessions.ClientMeta {
	m := sessions.ClientMeta{IP: httpx.ClientIP(r, h.trusted), UserAgent: r.UserAgent()}
	if r.Method == http.MethodPost { // a confirmation's typed reason, for the audit log
		m.ReasonText = strings.TrimSpace(r.PostForm.Get("reason_text"))
	}
	return m
}

// portalHeaders sets the security headers of every portal response.
func portalHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", portalCSP)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (h *Portal) portalStatic(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
		h.portalNotFound(w, r)
		return
	}
	h.static.ServeHTTP(w, r)
}

// Cookies. All are HttpOnly, SameSite=Strict and Path=/ (the admin pages
// and the account page share one sign-in); Secure, with the __Host- prefix,
// unless configured off.
const (
	cookieAccess  = "access"
	cookieRefresh = "refresh"
	cookieSignin  = "signin" // the sign-in form's double-submit nonce
	cookieFlash   = "flash"  // the message shown once after a redirect
)

func (h *Portal) cookieName(base string) string {
	if h.secure {
		return "__Host-sg_" + base
	}
	return "sg_" + base
}

func (h *Portal) setCookie(w http.ResponseWriter, base, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(base), Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode})
}

func (h *Portal) clearCookie(w http.ResponseWriter, base string) {
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(base), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode})
}

func (h *Portal) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(h.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}

func (h *Portal) setTokens(w http.ResponseWriter, pair sessions.TokenPair, refreshTTL time.Duration) {
	h.setCookie(w, cookieAccess, pair.AccessToken, time.Duration(pair.ExpiresIn)*time.Second)
	h.setCookie(w, cookieRefresh, pair.RefreshToken, refreshTTL)
}

func (h *Portal) clearTokens(w http.ResponseWriter) {
	h.clearCookie(w, cookieAccess)
	h.clearCookie(w, cookieRefresh)
}

// flash is a message shown once, on the page a redirect leads to.
type flash struct {
	Kind    string // "ok" or "error"
	Message string
}

func (h *Portal) setFlash(w http.ResponseWriter, kind, msg string) {
	h.setCookie(w, cookieFlash, base64.RawURLEncoding.EncodeToString([]byte(kind+"\n"+msg)), time.Minute)
}

// takeFlash reads the flash message, if any, and clears it.
func (h *Portal) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	v := h.cookie(r, cookieFlash)
	if v == "" {
		return nil
	}
	h.clearCookie(w, cookieFlash)
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil
	}
	kind, msg, ok := strings.Cut(string(b), "\n")
	if !ok || (kind != "ok" && kind != "error") || msg == "" || len(msg) > 500 {
		return nil
	}
	return &flash{Kind: kind, Message: msg}
}

// CSRF tokens.

func (h *Portal) mac(parts ...string) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessionCSRF is the CSRF token of every form of a signed-in page: bound to
// the session, so it survives token refreshes and dies with the session.
func (h *Portal) sessionCSRF(sessionID string) string { return h.mac("session", sessionID) }

// signinCSRF is the sign-in form's token for the nonce in its cookie.
func (h *Portal) signinCSRF(nonce string) string { return h.mac("signin", nonce) }

func csrfOK(got, want string) bool {
	return got != "" && hmac.Equal([]byte(got), []byte(want))
}

var errCSRF = fmt.Errorf("%w: the form's security token is missing or does not match. Reload the page and try again", sessions.ErrForbidden)

// maxFormBody bounds a portal form.
const maxFormBody = 64 << 10

// viewer is the signed-in user of a page.
type viewer struct {
	sessions.Principal
	Email string
	CSRF  string
}

// pageData is what every template gets.
type pageData struct {
	Title  string
	Area   area
	Nav    string // the navigation entry of this page
	Viewer *viewer
	Flash  *flash
	Now    time.Time
	Page   any
}

// errorPage is the body of error.html.
type errorPage struct {
	Status   int
	Heading  string
	Message  string
	LinkURL  string
	LinkText string
}

// render executes a page into a buffer first, so that a template error
// never leaves half a page.
func (h *Portal) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	if d.Flash == nil {
		d.Flash = h.takeFlash(w, r)
	}
	d.Now = h.svc.Now()
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		h.log.ErrorContext(r.Context(), "portal: render", "page", name, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// explain tells how err reaches the browser (sessions.Explain), logs what
// is for the log and sets Retry-After.
func (h *Portal) explain(w http.ResponseWriter, r *http.Request, err error) sessions.Failure {
	f := sessions.Explain(err)
	if f.Log {
		h.log.Log(r.Context(), f.LogLevel(), "portal request failed", "error", err.Error(), "path", r.URL.Path)
	}
	if f.RetryAfter > 0 {
		httpx.SetRetryAfter(w, f.RetryAfter)
	}
	return f
}

// portalFail renders the error page for err, as Explain tells; like the
// API it logs internal detail and never shows it.
func (h *Portal) portalFail(w http.ResponseWriter, r *http.Request, a area, v *viewer, err error) {
	f := h.explain(w, r, err)
	page := errorPage{Status: f.Status, Heading: http.StatusText(f.Status), Message: f.Message, LinkURL: a.home(), LinkText: "Back"}
	if v == nil {
		page.LinkURL, page.LinkText = a.signin(), "Go to the sign-in page"
	}
	h.render(w, r, f.Status, "error", pageData{Title: page.Heading, Area: a, Viewer: v, Page: page})
}

func (h *Portal) portalNotFound(w http.ResponseWriter, r *http.Request) {
	h.portalFail(w, r, portalArea(r), nil, fmt.Errorf("%w: there is no such page", sessions.ErrNotFound))
}

func (h *Portal) portalMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	httpx.Allow(w, r)
	page := errorPage{Status: http.StatusMethodNotAllowed, Heading: http.StatusText(http.StatusMethodNotAllowed),
		Message: "This page does not accept that kind of request.", LinkURL: portalArea(r).home(), LinkText: "Back"}
	h.render(w, r, http.StatusMethodNotAllowed, "error", pageData{Title: page.Heading, Area: portalArea(r), Page: page})
}

func portalArea(r *http.Request) area {
	if strings.HasPrefix(r.URL.Path, "/account") {
		return areaAccount
	}
	return areaAdmin
}

// errSignedOut says the browser holds no usable session.
var errSignedOut = errors.New("unauthorized: not signed in")

// portalPrincipal authenticates the browser's access token and, when it is
// missing, expired or otherwise refused, refreshes the pair with the refresh
// token and sets both cookies anew. Errors: ErrUnauthorized (or
// errSignedOut) when neither works, ErrUnavailable.
func (h *Portal) portalPrincipal(w http.ResponseWriter, r *http.Request) (p sessions.Principal, err error) {
	ctx := r.Context()
	defer func() {
		if err == nil {
			httpx.Identify(ctx, p.UserID, p.SessionID)
		}
	}()
	if at := h.cookie(r, cookieAccess); at != "" {
		p, err := h.svc.Authenticate(ctx, at)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, sessions.ErrUnauthorized) {
			return sessions.Principal{}, err
		}
	}
	rt := h.cookie(r, cookieRefresh)
	if rt == "" {
		return sessions.Principal{}, errSignedOut
	}
	pair, err := h.svc.Refresh(ctx, rt, h.meta(r))
	if err != nil {
		return sessions.Principal{}, err
	}
	h.setTokens(w, pair, h.svc.RefreshTTL())
	return h.svc.Authenticate(ctx, pair.AccessToken)
}

func isSignedOut(err error) bool {
	return errors.Is(err, errSignedOut) || errors.Is(err, sessions.ErrUnauthorized)
}

// portalPage is a page for a signed-in user.
type portalPage func(w http.ResponseWriter, r *http.Request, v *viewer)

// signedIn runs next for a signed-in user: it reads a POST's form (bounded),
// authenticates (refreshing when needed; a browser that is not signed in is
// sent to the sign-in page), checks a POST's CSRF token (403 when it does not
// match) and, for adminOnly pages, the role (403 for a plain user).
func (h *Portal) signedIn(a area, adminOnly bool, next portalPage) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
			if err := r.ParseForm(); err != nil {
				h.portalFail(w, r, a, nil, sessions.Invalid("the form could not be read (at most %d KiB, URL-encoded)", maxFormBody>>10))
				return
			}
		}
		p, err := h.portalPrincipal(w, r)
		if isSignedOut(err) {
			if h.cookie(r, cookieAccess) != "" || h.cookie(r, cookieRefresh) != "" {
				h.clearTokens(w)
				h.setFlash(w, "error", "Your session has ended. Please sign in again.")
			}
			http.Redirect(w, r, a.signin(), http.StatusSeeOther)
			return
		}
		if err != nil {
			h.portalFail(w, r, a, nil, err)
			return
		}
		v := &viewer{Principal: p, CSRF: h.sessionCSRF(p.SessionID)}
		emails, err := h.svc.UserEmails(r.Context(), []string{p.UserID})
		if err != nil {
			h.portalFail(w, r, a, nil, err)
			return
		}
		v.Email = emails[p.UserID]
		if r.Method == http.MethodPost && !csrfOK(r.PostForm.Get("csrf"), v.CSRF) {
			h.portalFail(w, r, a, v, errCSRF)
			return
		}
		if adminOnly && !p.IsAdmin() {
			page := errorPage{Status: http.StatusForbidden, Heading: "Administrators only",
				Message:  "You are signed in as " + v.Email + ", which is not an administrator account. You can still see and end your own sessions.",
				LinkURL:  areaAccount.home(),
				LinkText: "Go to My sessions"}
			h.render(w, r, http.StatusForbidden, "error", pageData{Title: page.Heading, Area: a, Viewer: v, Page: page})
			return
		}
		next(w, r, v)
	}
}

// redirectWith sets a flash message and redirects (303) to to.
func (h *Portal) redirectWith(w http.ResponseWriter, r *http.Request, to, kind, msg string) {
	h.setFlash(w, kind, msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// backTo is the form's "back" field when it is a path under prefix (the
// page the form was on, with its filters), else def. It never leads to
// another site.
func backTo(r *http.Request, prefix, def string) string {
	b := r.PostForm.Get("back")
	if !strings.HasPrefix(b, prefix) || strings.ContainsAny(b, "\\\r\n") {
		return def
	}
	u, err := url.Parse(b)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return def
	}
	return u.RequestURI()
}
