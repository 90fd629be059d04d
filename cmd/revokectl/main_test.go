package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestCommands(t *testing.T) {
	dbURL := testenv.DatabaseURL(t)
	env := map[string]string{"DATABASE_URL": dbURL, "KEY_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))}
	ctl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"revokectl"}, args...), func(k string) string { return env[k] }, &out, &errOut)
		return strings.TrimSpace(out.String()), err
	}
	if out, err := ctl("migrate"); err != nil || !strings.Contains(out, "schema is current") {
		t.Fatalf("migrate: %q %v", out, err)
	}
	org, err := ctl("org", "create", "Acme")
	if err != nil || len(org) != 36 {
		t.Fatalf("org create: %q %v", org, err)
	}
	user, err := ctl("user", "create", "-org", org, "-email", "ops@acme.test", "-password", "password-1", "-role", "org_admin")
	if err != nil || len(user) != 36 {
		t.Fatalf("user create: %q %v", user, err)
	}
	if _, err := ctl("user", "create", "-org", org, "-email", "OPS@acme.test", "-password", "password-1"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("duplicate user: %v", err)
	}
	pool, err := postgres.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i := 0; i < 2; i++ {
		out, err := ctl("keys", "rotate")
		if err != nil || !strings.Contains(out, "new signing key") {
			t.Fatalf("keys rotate: %q %v", out, err)
		}
	}
	var active, all int
	_ = pool.QueryRow(t.Context(), "SELECT count(*) FILTER (WHERE retired_at IS NULL), count(*) FROM signing_keys").Scan(&active, &all)
	if active != 1 || all != 2 {
		t.Fatalf("after two rotations: %d active of %d keys", active, all)
	}
	// a live session revocation and an expired one: republish queues only the live one
	if _, err := pool.Exec(t.Context(), `INSERT INTO revocations (event_id, kind, value, sid, sub, org, reason, revoked_at, expires_at) VALUES
		(gen_random_uuid(), 'session', 'a1b2c3d4-0000-4000-8000-000000000001', 'a1b2c3d4-0000-4000-8000-000000000001', $1, $2, 'admin_revoke', now(), now() + interval '5 minutes'),
		(gen_random_uuid(), 'session', 'a1b2c3d4-0000-4000-8000-000000000002', 'a1b2c3d4-0000-4000-8000-000000000002', $1, $2, 'admin_revoke', now() - interval '1 hour', now() - interval '50 minutes')`, user, org); err != nil {
		t.Fatal(err)
	}
	if out, err := ctl("republish"); err != nil || out != "queued 1 live revocation(s) for publishing" {
		t.Fatalf("republish: %q %v", out, err)
	}
	var payload string
	_ = pool.QueryRow(t.Context(), "SELECT convert_from(payload, 'UTF8') FROM outbox WHERE subject = 'revocations.v1.session'").Scan(&payload)
	if !strings.Contains(payload, `"sid":"a1b2c3d4-0000-4000-8000-000000000001"`) {
		t.Fatalf("republished payload %s", payload)
	}
	// a bulk revocation by filter: two live sessions of the org's admin
	if _, err := pool.Exec(t.Context(), `INSERT INTO sessions (id, user_id, org_id, device_type, last_active_at, expires_at)
		SELECT gen_random_uuid(), $1, $2, 'android', now(), now() + interval '1 day' FROM generate_series(1, 2)`, user, org); err != nil {
		t.Fatal(err)
	}
	if out, err := ctl("revoke", "-org", org, "-role", "org_admin", "-dry-run"); err != nil || out != "2 session(s) of 1 user(s) match; nothing written" {
		t.Fatalf("revoke -dry-run: %q %v", out, err)
	}
	if out, err := ctl("revoke", "--org", org, "--device-type", "android", "--reason", "lost phones"); err != nil || !strings.HasPrefix(out, "revoked 2 session(s) of 1 user(s); revocation ") {
		t.Fatalf("revoke: %q %v", out, err)
	}
	if _, err := ctl("revoke", "-org", org, "-signed-in-before", "soon"); err == nil || !strings.Contains(err.Error(), "-signed-in-before") {
		t.Fatalf("a malformed time: %v", err)
	}
	if _, err := ctl("revoke", "-role", "user"); err == nil || !strings.Contains(err.Error(), "org_id") {
		t.Fatalf("no org: %v", err)
	}
	if _, err := ctl("frobnicate"); err == nil {
		t.Fatal("unknown command accepted")
	}
}
