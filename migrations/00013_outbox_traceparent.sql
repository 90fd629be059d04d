-- +goose Up
-- The W3C traceparent of the request that wrote an outbox row (NULL: none,
-- or tracing off), so that the relay's sweep publishes it in the trace it
-- began in, as the fast path does (internal/outbox, internal/telemetry).
ALTER TABLE outbox ADD COLUMN traceparent text;

-- +goose Down
ALTER TABLE outbox DROP COLUMN traceparent;
