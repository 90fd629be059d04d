-- +goose Up
-- API clients (POST /v1/clients): services that introspect tokens or manage
-- Shared Signals streams. The secret is kept only as a hash (it is 256
-- random bits, so a fast hash is as strong as a slow one); org_id NULL is a
-- client of every org.
CREATE TABLE api_clients (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    org_id      uuid REFERENCES orgs (id),
    scopes      text[] NOT NULL,
    secret_hash bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid,
    deleted_at  timestamptz
);
CREATE INDEX api_clients_org_idx ON api_clients (org_id) WHERE deleted_at IS NULL;

-- Client access tokens (POST /oauth2/token): opaque, kept as hashes, dead
-- with their client.
CREATE TABLE client_tokens (
    token_hash bytea PRIMARY KEY,
    client_id  uuid NOT NULL REFERENCES api_clients (id),
    scopes     text[] NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX client_tokens_expires_idx ON client_tokens (expires_at);

-- +goose Down
DROP TABLE client_tokens;
DROP TABLE api_clients;
