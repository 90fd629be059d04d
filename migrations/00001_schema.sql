-- +goose Up
CREATE TABLE orgs (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES orgs (id),
    email             text NOT NULL,
    password_hash     text,
    role              text NOT NULL CHECK (role IN ('user', 'org_admin', 'global_admin')),
    disabled_at       timestamptz,
    erased_at         timestamptz,
    -- Access tokens of this user with iat before this instant are revoked.
    -- Always a whole second: sessiond never issues a token with iat below it.
    tokens_not_before timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_org_idx ON users (org_id);
CREATE INDEX users_global_admin_idx ON users (role) WHERE role = 'global_admin';

CREATE TABLE sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id),
    org_id         uuid NOT NULL REFERENCES orgs (id),
    device_type    text NOT NULL CHECK (device_type IN ('ios', 'android', 'web', 'desktop', 'other')),
    device_name    text,
    user_agent     text,
    ip             inet,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_active_at timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    revoked_by     uuid
);
-- Keyset listing (newest activity first) of live sessions, by org, by user, and overall.
CREATE INDEX sessions_org_activity_idx ON sessions (org_id, last_active_at DESC, id DESC) WHERE revoked_at IS NULL;
CREATE INDEX sessions_user_activity_idx ON sessions (user_id, last_active_at DESC, id DESC) WHERE revoked_at IS NULL;
CREATE INDEX sessions_activity_idx ON sessions (last_active_at DESC, id DESC) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    parent_id   uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    replaced_by uuid
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

-- The authoritative blocklist: every live entry a gateway must hold.
CREATE TABLE revocations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    kind       text NOT NULL CHECK (kind IN ('session', 'token', 'user')),
    value      text NOT NULL,
    sid        uuid,
    sub        uuid NOT NULL,
    org        uuid NOT NULL,
    not_before timestamptz,
    reason     text NOT NULL,
    revoked_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revocations_lookup_idx ON revocations (kind, value);
CREATE INDEX revocations_expires_idx ON revocations (expires_at);

CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    subject    text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;

CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    action         text NOT NULL,
    actor_id       uuid,
    org_id         uuid,
    target_user_id uuid,
    session_id     uuid,
    ip             inet,
    reason         text,
    detail         jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_org_idx ON audit_log (org_id, at DESC, id DESC);
CREATE INDEX audit_log_user_idx ON audit_log (target_user_id, at DESC, id DESC);

-- Failed logins, for LOGIN_RATE_LIMIT; keyed by normalised email and by client IP.
CREATE TABLE login_failures (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account text NOT NULL,
    ip      inet,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX login_failures_account_idx ON login_failures (account, at DESC);
CREATE INDEX login_failures_ip_idx ON login_failures (ip, at DESC);

-- Ed25519 signing keys; the private half sealed with AES-256-GCM under KEY_ENCRYPTION_KEY.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    public_key  bytea NOT NULL,
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE login_failures;
DROP TABLE audit_log;
DROP TABLE outbox;
DROP TABLE revocations;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
DROP TABLE orgs;
