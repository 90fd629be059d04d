-- +goose Up
-- A bulk revocation by rule (POST /v1/revocations with a filter of org_id,
-- role and signed_in_before only): one row and one revocations.v1.org event
-- cover every session of the org (and role) signed in before auth_before.
-- Gateways enforce it on auth_time; the database treats the covered
-- sessions as revoked at once (sessionsCovered), and the rule marker marks
-- their rows revoked, with their audit rows, in batches (marked_at when
-- done).
CREATE TABLE revocation_rules (
    id          uuid PRIMARY KEY,             -- the event's id
    org_id      uuid NOT NULL REFERENCES orgs (id),
    role        text CHECK (role IN ('user', 'org_admin', 'global_admin')), -- NULL: every role
    auth_before timestamptz NOT NULL,
    actor_id    uuid,
    ip          inet,
    receipt_id  uuid NOT NULL,
    created_at  timestamptz NOT NULL,         -- the revocation's instant
    expires_at  timestamptz NOT NULL,         -- when gateways forget it: no token it covers is left
    marked_at   timestamptz                   -- every covered session row marked revoked
);
CREATE INDEX revocation_rules_org_idx ON revocation_rules (org_id, expires_at);
CREATE INDEX revocation_rules_unmarked_idx ON revocation_rules (created_at) WHERE marked_at IS NULL;

-- +goose Down
DROP TABLE revocation_rules;
