-- +goose Up
-- An organisation's session policy (GET/PUT /v1/orgs/{id}/policy). No row:
-- no limit, no idle timeout, no lifetime bound.
CREATE TABLE org_policies (
    org_id                uuid PRIMARY KEY REFERENCES orgs (id),
    max_sessions_per_user integer NOT NULL DEFAULT 0 CHECK (max_sessions_per_user >= 0),
    on_limit              text NOT NULL DEFAULT 'revoke_oldest' CHECK (on_limit IN ('revoke_oldest', 'deny')),
    idle_timeout          interval NOT NULL DEFAULT '0s',
    max_session_lifetime  interval NOT NULL DEFAULT '0s',
    updated_at            timestamptz NOT NULL DEFAULT now(),
    updated_by            uuid
);
-- The sweep's second probe: an org's live sessions by sign-in time (the
-- first, by last activity, is sessions_org_activity_idx).
CREATE INDEX sessions_org_created_idx ON sessions (org_id, created_at) WHERE revoked_at IS NULL;
-- The admin listing by sign-in time, newest first, across orgs.
CREATE INDEX sessions_created_idx ON sessions (created_at DESC, id DESC) WHERE revoked_at IS NULL;

-- +goose Down
DROP INDEX sessions_created_idx;
DROP INDEX sessions_org_created_idx;
DROP TABLE org_policies;
