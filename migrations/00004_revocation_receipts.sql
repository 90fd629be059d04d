-- +goose Up
-- A receipt per revoking action: what was asked, by whom, in whose scope.
-- Whether it is published (every event acked by JetStream) and enforced
-- (every gateway live at its publish has applied it) is learnt from the
-- outbox and the gateways' reports, and written here once it is final.
CREATE TABLE revocation_receipts (
    id           uuid PRIMARY KEY,
    actor_id     uuid,           -- NULL: the system (reuse detection, erasure)
    org_id       uuid,           -- the org of what was revoked: an org admin's scope
    reason       text NOT NULL,
    events       integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz,
    last_seq     bigint,
    enforced_at  timestamptz,
    expected     integer,        -- gateways that had to apply it
    departed     uuid[]          -- gateways that left before they applied it
);
-- Rows arrive in time order: a BRIN index serves the retention purge and
-- costs an insert almost nothing.
CREATE INDEX revocation_receipts_created_idx ON revocation_receipts USING brin (created_at);

-- Each outbox row names its receipt, and the relay records the stream
-- sequence JetStream acknowledged it at: a receipt is enforced at a gateway
-- once the gateway's watermark reaches its last sequence.
ALTER TABLE outbox ADD COLUMN receipt_id uuid;
ALTER TABLE outbox ADD COLUMN stream_seq bigint;
CREATE INDEX outbox_receipt_idx ON outbox (receipt_id) WHERE receipt_id IS NOT NULL;

-- +goose Down
DROP INDEX outbox_receipt_idx;
ALTER TABLE outbox DROP COLUMN stream_seq;
ALTER TABLE outbox DROP COLUMN receipt_id;
DROP TABLE revocation_receipts;
