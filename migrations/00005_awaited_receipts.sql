-- +goose Up
-- Whether the revoking call waited for its receipt (Prefer: wait, or the
-- portal). The relay marks such events for the gateways, which report the
-- watermark that covers them at once; progress nobody waits for is reported
-- coalesced, so a fleet of thousands of gateways stays cheap to hear.
ALTER TABLE revocation_receipts ADD COLUMN awaited boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE revocation_receipts DROP COLUMN awaited;
