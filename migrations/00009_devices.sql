-- +goose Up
-- A device's own id (login's device.id): a new sign-in of the same user
-- from the same device ends the device's previous session (reason
-- replaced), so a phone that signs in again does not pile up sessions.
ALTER TABLE sessions ADD COLUMN device_id text CHECK (octet_length(device_id) BETWEEN 1 AND 128);
CREATE INDEX sessions_user_device_idx ON sessions (user_id, device_id) WHERE revoked_at IS NULL AND device_id IS NOT NULL;

-- The client label at sign-in ("Safari on iOS"), and each user's sign-ins
-- by time: whether a sign-in comes from a device new to the user (no
-- sign-in with its device id, else its client, in 90 days) is one probe.
ALTER TABLE sessions ADD COLUMN client text;
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at);

-- +goose Down
DROP INDEX sessions_user_created_idx;
ALTER TABLE sessions DROP COLUMN client;
DROP INDEX sessions_user_device_idx;
ALTER TABLE sessions DROP COLUMN device_id;
