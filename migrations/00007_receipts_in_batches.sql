-- +goose Up
-- A bulk revocation that ends sessions one by one commits them in batches,
-- each published as it commits, under one receipt. Until its last batch has
-- committed the receipt is not complete: events counts the batches so far,
-- and the receipt cannot be published or enforced yet.
ALTER TABLE revocation_receipts ADD COLUMN complete boolean NOT NULL DEFAULT true;

-- +goose Down
ALTER TABLE revocation_receipts DROP COLUMN complete;
