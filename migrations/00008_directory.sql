-- +goose Up
-- The user directory (GET /v1/users): when each user last signed in, and a
-- trigram index for the search by any part of an email.
ALTER TABLE users ADD COLUMN last_login_at timestamptz;
UPDATE users u SET last_login_at = s.at FROM (SELECT user_id, max(created_at) AS at FROM sessions GROUP BY user_id) s WHERE s.user_id = u.id;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_trgm_idx ON users USING gin (lower(email) gin_trgm_ops);
-- A trigram serves a search of three characters or more; one of one or two
-- is served by the email's single characters and pairs, each once. (Marked
-- parallel unsafe so that the short walk of a common pair is not handed
-- to parallel workers, whose start costs more than the walk.)
-- +goose StatementBegin
CREATE FUNCTION email_grams(e text) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL UNSAFE AS $$
    SELECT COALESCE(array_agg(DISTINCT g), '{}') FROM (
        SELECT substr(e, i, 1) AS g FROM generate_series(1, length(e)) i
        UNION ALL SELECT substr(e, i, 2) FROM generate_series(1, length(e) - 1) i) x
$$;
-- +goose StatementEnd
CREATE INDEX users_email_grams_idx ON users USING gin (email_grams(lower(email)));

-- The directory's order is the emails' bytes (collation "C", whatever the
-- database's): a search of the first letters is then a range of this
-- index, and an org admin's directory a walk along the second.
CREATE INDEX users_email_order_idx ON users ((lower(email) COLLATE "C"));
CREATE INDEX users_org_email_idx ON users (org_id, (lower(email) COLLATE "C"));

-- Org names are unique whatever their case. Duplicates made before are
-- renamed, the oldest keeping its name: "Acme" and "acme" become "Acme" and
-- "acme (3f2a9c1e)", the start of the younger one's id.
UPDATE orgs o SET name = left(o.name, 189) || ' (' || left(o.id::text, 8) || ')'
FROM (SELECT id, row_number() OVER (PARTITION BY lower(name) ORDER BY created_at, id) AS n FROM orgs) d
WHERE d.id = o.id AND d.n > 1;
CREATE UNIQUE INDEX orgs_name_key ON orgs (lower(name));

-- +goose Down
DROP INDEX orgs_name_key;
DROP INDEX users_org_email_idx;
DROP INDEX users_email_order_idx;
DROP INDEX users_email_grams_idx;
DROP FUNCTION email_grams(text);
DROP INDEX users_email_trgm_idx;
ALTER TABLE users DROP COLUMN last_login_at;
