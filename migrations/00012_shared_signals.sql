-- +goose Up
-- The OpenID Shared Signals transmitter: streams of SETs to receivers.

-- A stream (SSF 1.0 section 8.1.1), owned by the API client that created
-- it. org_id is the client's org (NULL: every org): the stream carries only
-- that org's subjects. Each live stream is a durable JetStream consumer of
-- the SIGNALS stream, named ssf-<id>, started at created_at.
CREATE TABLE ssf_streams (
    id                        uuid PRIMARY KEY,
    client_id                 uuid NOT NULL REFERENCES api_clients (id),
    org_id                    uuid REFERENCES orgs (id),
    aud                       text NOT NULL,
    description               text,
    events_requested          text[] NOT NULL,
    delivery_method           text NOT NULL CHECK (delivery_method IN ('urn:ietf:rfc:8935', 'urn:ietf:rfc:8936')),
    endpoint_url              text,
    -- The push receiver's Authorization header, sealed under the KEK.
    authorization_header      bytea,
    min_verification_interval integer NOT NULL DEFAULT 0 CHECK (min_verification_interval >= 0),
    status                    text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'paused', 'disabled')),
    status_reason             text,
    -- Who set the status last: the receiver, the transmitter (its push
    -- failing too long: the receiver may enable it again) or an
    -- administrator of the transmitter (the receiver may not).
    status_by                 text NOT NULL DEFAULT 'receiver' CHECK (status_by IN ('receiver', 'transmitter', 'admin')),
    last_verification_at      timestamptz,
    last_delivery_at          timestamptz,
    last_error                text,
    last_error_at             timestamptz,
    -- When push delivery began to fail without a success since.
    failing_since             timestamptz,
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL
);
CREATE INDEX ssf_streams_client_idx ON ssf_streams (client_id);
CREATE INDEX ssf_streams_org_idx ON ssf_streams (org_id);

-- Subjects a receiver removed from (included false) or added back to
-- (included true) a stream (SSF 1.0 sections 8.1.3.2, 8.1.3.3). Every
-- subject is in a stream unless removed (default_subjects ALL, as the CAEP
-- interoperability profile has receivers assume). key is the subject in a
-- normal form: "email:<lowercase address>", "iss_sub:<iss> <sub>",
-- "opaque:<id>".
CREATE TABLE ssf_subjects (
    stream_id  uuid NOT NULL REFERENCES ssf_streams (id) ON DELETE CASCADE,
    key        text NOT NULL,
    subject    jsonb NOT NULL,
    included   boolean NOT NULL,
    verified   boolean,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (stream_id, key)
);

-- SETs of poll streams (RFC 8936) waiting for the receiver's
-- acknowledgement, in the order they were made.
CREATE TABLE ssf_poll_sets (
    stream_id  uuid NOT NULL REFERENCES ssf_streams (id) ON DELETE CASCADE,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    jti        text NOT NULL,
    set_jwt    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, seq)
);
CREATE UNIQUE INDEX ssf_poll_sets_jti_idx ON ssf_poll_sets (stream_id, jti);

-- The transmitter's SET signing keys: RSA, 2048 bits, RS256 (the CAEP
-- interoperability profile's), sealed under the KEK. Every unretired key is
-- in the transmitter's JWKS; the newest signs.
CREATE TABLE ssf_signing_keys (
    kid         text PRIMARY KEY,
    public_key  bytea NOT NULL,
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- +goose Down
DROP TABLE ssf_signing_keys;
DROP TABLE ssf_poll_sets;
DROP TABLE ssf_subjects;
DROP TABLE ssf_streams;
