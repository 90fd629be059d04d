-- +goose Up
-- The retention purge finds rotated refresh tokens and revoked sessions by
-- these times; without an index every run read the whole table.
CREATE INDEX refresh_tokens_rotated_idx ON refresh_tokens (rotated_at) WHERE rotated_at IS NOT NULL;
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX sessions_revoked_idx;
DROP INDEX refresh_tokens_rotated_idx;
