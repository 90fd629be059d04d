-- +goose Up
-- The iat of the latest access token issued for a session (to the
-- microsecond). A user-level revocation sets the user's not-before after
-- the latest of these, so it orders exactly against every token issued
-- before it, whatever the issuing replica's clock said.
ALTER TABLE sessions ADD COLUMN access_issued_at timestamptz;
COMMENT ON COLUMN sessions.access_issued_at IS 'iat of the latest access token issued for this session';
COMMENT ON COLUMN users.tokens_not_before IS
    'access tokens of this user with iat before this instant (to the microsecond) are revoked; every token issued later has a later iat';

-- An erased user's email is NULL, not a tombstone of a known form: a user
-- created with the tombstone first would make the erasure fail on the
-- unique index.
ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
UPDATE users SET email = NULL WHERE erased_at IS NOT NULL;

-- +goose Down
UPDATE users SET email = 'erased+' || id::text || '@invalid' WHERE email IS NULL;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
COMMENT ON COLUMN users.tokens_not_before IS NULL;
ALTER TABLE sessions DROP COLUMN access_issued_at;
