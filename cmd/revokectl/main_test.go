package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
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
		err := run(context.Background(), append([]string{"revokectl"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
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
	// Shared Signals signals sent in the last hour go back in the queue;
	// an older one and other subjects stay sent.
	if _, err := pool.Exec(t.Context(), `INSERT INTO outbox (event_id, subject, payload, sent_at) VALUES
		(gen_random_uuid(), 'signals.v1.org.' || $1 || '.account', '{}', now() - interval '10 minutes'),
		(gen_random_uuid(), 'signals.v1.org.' || $1 || '.account', '{}', now() - interval '2 hours'),
		(gen_random_uuid(), 'sessions.v1.user.erased', '{}', now() - interval '10 minutes')`, org); err != nil {
		t.Fatal(err)
	}
	if out, err := ctl("republish", "--signals", "1h"); err != nil || !strings.HasSuffix(out, "queued 1 Shared Signals signal(s) of the last 1h0m0s again") {
		t.Fatalf("republish --signals: %q %v", out, err)
	}
	var unsentSignals, unsentOther int
	_ = pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE subject LIKE 'signals.%'), count(*) FILTER (WHERE subject = 'sessions.v1.user.erased')
		FROM outbox WHERE sent_at IS NULL`).Scan(&unsentSignals, &unsentOther)
	if unsentSignals != 1 || unsentOther != 0 {
		t.Fatalf("after republish --signals 1h: %d signals and %d others unsent, want 1 and 0", unsentSignals, unsentOther)
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
	if _, err := ctl("revoke", "-role", "user"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--org") {
		t.Fatalf("no org: %v", err)
	}
	if _, err := ctl("frobnicate"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Fatalf("an unknown command: %v", err)
	}

	// The directory: orgs and users, a lockout cleared, enable and disable.
	if out, err := ctl("org", "list"); err != nil || !strings.Contains(out, org) || !strings.Contains(out, "Acme") {
		t.Fatalf("org list: %q %v", out, err)
	}
	if out, err := ctl("user", "list", "--org", org, "--email", "OPS@"); err != nil || !strings.Contains(out, user) || !strings.Contains(out, "org_admin") {
		t.Fatalf("user list: %q %v", out, err)
	}
	if out, err := ctl("user", "disable", user); err != nil || !strings.Contains(out, "ops@acme.test is disabled") {
		t.Fatalf("user disable: %q %v", out, err)
	}
	if out, err := ctl("user", "list", "--disabled"); err != nil || !strings.Contains(out, user) || !strings.Contains(out, "disabled") {
		t.Fatalf("user list --disabled: %q %v", out, err)
	}
	if out, err := ctl("user", "enable", user); err != nil || !strings.Contains(out, "enabled") {
		t.Fatalf("user enable: %q %v", out, err)
	}
	if _, err := pool.Exec(t.Context(), `INSERT INTO login_failures (account, ip) VALUES ('ops@acme.test', NULL), ('ops@acme.test', NULL)`); err != nil {
		t.Fatal(err)
	}
	if out, err := ctl("user", "unlock", user); err != nil || out != "cleared 2 failed sign-in(s); the user can sign in again now" {
		t.Fatalf("user unlock: %q %v", out, err)
	}
	// A value that starts with a dash is a value, not a flag.
	if id, err := ctl("user", "create", "-org", org, "-email", "dash@acme.test", "-password=-starts-with-a-dash"); err != nil || len(id) != 36 {
		t.Fatalf("a password starting with a dash: %q %v", id, err)
	}
	// A password from stdin, never on the command line.
	var out bytes.Buffer
	err = run(context.Background(), []string{"revokectl", "user", "create", "--org", org, "--email", "piped@acme.test", "--password-stdin"},
		func(k string) string { return env[k] }, strings.NewReader("password-from-stdin\n"), &out, io.Discard)
	if err != nil || len(strings.TrimSpace(out.String())) != 36 {
		t.Fatalf("user create --password-stdin: %q %v", out.String(), err)
	}
	var hash string
	if err := pool.QueryRow(t.Context(), `SELECT password_hash FROM users WHERE email = 'piped@acme.test'`).Scan(&hash); err != nil || !strings.HasPrefix(hash, "$argon2id$") {
		t.Fatalf("the piped user's password: %q %v", hash, err)
	}
}

// TestHelpAndUsage: help needs no database and exits 0; a usage error
// exits 2 (errUsage) naming what is wrong; a database without the schema
// is named as such; a missing DATABASE_URL says what to set.
func TestHelpAndUsage(t *testing.T) {
	none := func(string) string { return "" }
	for _, args := range [][]string{{"revokectl"}, {"revokectl", "--help"}, {"revokectl", "user", "--help"}, {"revokectl", "revoke", "-h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, none, strings.NewReader(""), &out, io.Discard); err != nil || !strings.Contains(out.String(), "Usage: revokectl") {
			t.Errorf("%v: %v, help %q", args, err, out.String())
		}
	}
	for args, want := range map[string]string{
		"user create --email a@b.test":    "--org",
		"revoke --org x --dry-run --frob": "--frob",
		"user list --limit many":          "--limit",
		"keys":                            "expected",
	} {
		err := run(context.Background(), append([]string{"revokectl"}, strings.Fields(args)...), none, strings.NewReader(""), io.Discard, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a usage error naming %s", args, err, want)
		}
	}
	if err := run(context.Background(), []string{"revokectl", "org", "list"}, none, strings.NewReader(""), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "DATABASE_URL is required") {
		t.Errorf("no DATABASE_URL: %v", err)
	}
	empty := testenv.EmptyDatabaseURL(t)
	err := run(context.Background(), []string{"revokectl", "org", "list"}, func(k string) string {
		if k == "DATABASE_URL" {
			return empty
		}
		return ""
	}, strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "revokectl migrate") {
		t.Errorf("an unmigrated database: %v", err)
	}
}
