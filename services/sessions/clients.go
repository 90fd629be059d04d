package sessions

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// API clients: services that call the standard endpoints (RFC 7662
// introspection, the Shared Signals transmitter) with credentials of their
// own, not a user's.

// Client scopes.
const (
	ScopeIntrospect = "introspect"
	ScopeSSFManage  = "ssf.manage"
	ScopeSSFRead    = "ssf.read"
)

var clientScopes = []string{ScopeIntrospect, ScopeSSFManage, ScopeSSFRead}

// Client is an API client as the API shows it; OrgID nil is a client of
// every org.
type Client struct {
	ID        string    `json:"client_id"`
	Name      string    `json:"name"`
	OrgID     *string   `json:"org_id"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
}

// Has reports whether c holds scope.
func (c Client) Has(scope string) bool { return slices.Contains(c.Scopes, scope) }

// NewClient is the input of CreateClient.
type NewClient struct {
	Name   string
	OrgID  string // "" for every org (global admins only)
	Scopes []string
}

// clientTokenTTL is the life of a client access token.
const clientTokenTTL = 5 * time.Minute

// CreateClient registers an API client and returns it with its secret,
// which is shown only here. Global admins create clients of any org or of
// none (every org); org admins of their own org.
func (s *Service) CreateClient(ctx context.Context, p Principal, in NewClient, meta ClientMeta) (Client, string, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return Client{}, "", err
	}
	in.Name = strings.TrimSpace(in.Name)
	switch {
	case in.Name == "" || len(in.Name) > 200 || !storable(in.Name) || !printable(in.Name):
		return Client{}, "", Invalid("name is required (at most 200 characters)")
	case in.OrgID != "" && !isUUID(in.OrgID):
		return Client{}, "", Invalid("org_id must be a UUID")
	case len(in.Scopes) == 0:
		return Client{}, "", Invalid("scopes must name at least one of %s", strings.Join(clientScopes, ", "))
	}
	for _, sc := range in.Scopes {
		if !slices.Contains(clientScopes, sc) {
			return Client{}, "", Invalid("scopes: %q is not one of %s", sc, strings.Join(clientScopes, ", "))
		}
	}
	if scope != "" {
		if in.OrgID == "" {
			in.OrgID = scope
		}
		if in.OrgID != scope {
			return Client{}, "", fmt.Errorf("%w: no org with this id in your scope", ErrNotFound)
		}
	}
	scopes := slices.Compact(slices.Sorted(slices.Values(in.Scopes)))
	secret := newRefreshToken()
	c := Client{ID: uuid.NewString(), Name: in.Name, Scopes: scopes, CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	if in.OrgID != "" {
		c.OrgID = &in.OrgID
	}
	err = s.inTx(ctx, "CreateClient", func(tx pgx.Tx) error {
		if c.OrgID != nil {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = $1)`, *c.OrgID).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return fmt.Errorf("%w: no org with this id in your scope", ErrNotFound)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO api_clients (id, name, org_id, scopes, secret_hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			c.ID, c.Name, c.OrgID, c.Scopes, hashToken(secret), c.CreatedAt, nullable(p.UserID)); err != nil {
			return err
		}
		return writeAudit(ctx, tx, auditEntry{Action: ActionClientCreated, ActorID: p.UserID, OrgID: in.OrgID, IP: meta.IP,
			Detail: map[string]any{"client_id": c.ID, "name": c.Name, "scopes": c.Scopes}})
	})
	if err != nil {
		return Client{}, "", domainOr(err, "create client")
	}
	return c, secret, nil
}

// ListClients lists the live API clients in p's scope: every one for a
// global admin, its org's for an org admin.
func (s *Service) ListClients(ctx context.Context, p Principal) ([]Client, error) {
	scope, err := AdminScope(p)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text, name, org_id::text, scopes, created_at FROM api_clients
		WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR org_id = $1) ORDER BY created_at, id LIMIT 1000`, nullable(scope))
	if err != nil {
		return nil, fmt.Errorf("%w: list clients: %w", ErrUnavailable, err)
	}
	out, err := pgx.CollectRows(rows, scanClient)
	if err != nil {
		return nil, fmt.Errorf("%w: list clients: %w", ErrUnavailable, err)
	}
	return out, nil
}

func scanClient(r pgx.CollectableRow) (Client, error) {
	var c Client
	err := r.Scan(&c.ID, &c.Name, &c.OrgID, &c.Scopes, &c.CreatedAt)
	c.CreatedAt = c.CreatedAt.UTC()
	return c, err
}

// DeleteClient ends an API client in p's scope: its secret and every token
// it holds stop working at once. ErrNotFound out of scope.
func (s *Service) DeleteClient(ctx context.Context, p Principal, id string, meta ClientMeta) error {
	scope, err := AdminScope(p)
	if err != nil {
		return err
	}
	if !isUUID(id) {
		return Invalid("client id must be a UUID")
	}
	err = s.inTx(ctx, "DeleteClient", func(tx pgx.Tx) error {
		var org *string
		err := tx.QueryRow(ctx, `UPDATE api_clients SET deleted_at = $3 WHERE id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR org_id = $2)
			RETURNING org_id::text`, id, nullable(scope), s.now()).Scan(&org)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: no client with this id in your scope", ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM client_tokens WHERE client_id = $1`, id); err != nil {
			return err
		}
		return writeAudit(ctx, tx, auditEntry{Action: ActionClientDeleted, ActorID: p.UserID, OrgID: orEmpty(org), IP: meta.IP, Detail: map[string]any{"client_id": id}})
	})
	if err != nil {
		return domainOr(err, "delete client")
	}
	return nil
}

// errBadClient is the one answer to failed client authentication.
var errBadClient = fmt.Errorf("%w: invalid client credentials", ErrUnauthorized)

// AuthenticateClient checks an API client's id and secret (HTTP Basic at
// the OAuth endpoints). ErrUnauthorized for anything wrong.
func (s *Service) AuthenticateClient(ctx context.Context, id, secret string) (Client, error) {
	if !isUUID(id) || secret == "" {
		return Client{}, errBadClient
	}
	var (
		c    Client
		hash []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT id::text, name, org_id::text, scopes, created_at, secret_hash FROM api_clients WHERE id = $1 AND deleted_at IS NULL`, id).
		Scan(&c.ID, &c.Name, &c.OrgID, &c.Scopes, &c.CreatedAt, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, errBadClient
	}
	if err != nil {
		return Client{}, fmt.Errorf("%w: client: %w", ErrUnavailable, err)
	}
	if subtle.ConstantTimeCompare(hash, hashToken(secret)) != 1 {
		return Client{}, errBadClient
	}
	return c, nil
}

// ClientToken is the answer of POST /oauth2/token.
type ClientToken struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// IssueClientToken gives c an opaque access token for the scopes it asks
// (space-separated; "" for all of its own). ErrInvalid (invalid_scope) for
// a scope c does not hold.
func (s *Service) IssueClientToken(ctx context.Context, c Client, scope string) (ClientToken, error) {
	want := c.Scopes
	if scope = strings.TrimSpace(scope); scope != "" {
		want = strings.Fields(scope)
		for _, sc := range want {
			if !c.Has(sc) {
				return ClientToken{}, fmt.Errorf("%w: scope %q is not one of the client's", ErrInvalidScope, sc)
			}
		}
	}
	tok := newRefreshToken()
	now := s.now()
	if _, err := s.pool.Exec(ctx, `INSERT INTO client_tokens (token_hash, client_id, scopes, expires_at) VALUES ($1, $2, $3, $4)`,
		hashToken(tok), c.ID, want, now.Add(clientTokenTTL)); err != nil {
		return ClientToken{}, fmt.Errorf("%w: client token: %w", ErrUnavailable, err)
	}
	return ClientToken{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(clientTokenTTL / time.Second), Scope: strings.Join(want, " ")}, nil
}

// ErrInvalidScope is a token request for a scope the client does not hold.
var ErrInvalidScope = errors.New("invalid scope")

// ClientByToken returns the client a client access token belongs to, with
// the token's scopes. ErrUnauthorized for a token unknown, expired, or of a
// deleted client.
func (s *Service) ClientByToken(ctx context.Context, tok string) (Client, error) {
	var c Client
	err := s.pool.QueryRow(ctx, `SELECT c.id::text, c.name, c.org_id::text, t.scopes, c.created_at FROM client_tokens t JOIN api_clients c ON c.id = t.client_id
		WHERE t.token_hash = $1 AND t.expires_at > $2 AND c.deleted_at IS NULL`, hashToken(tok), s.now()).
		Scan(&c.ID, &c.Name, &c.OrgID, &c.Scopes, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Client{}, fmt.Errorf("%w: invalid or expired client token", ErrUnauthorized)
	}
	if err != nil {
		return Client{}, fmt.Errorf("%w: client token: %w", ErrUnavailable, err)
	}
	return c, nil
}
