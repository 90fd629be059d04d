// Command revokectl is the operator's CLI: schema migrations, signing-key
// rotation, organisations and users, and republishing the live blocklist.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sessionguard/revoke/services/sessions/sessiond"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/services/sessions"
)

const usage = `usage: revokectl COMMAND [flags]

commands:
  migrate                       apply pending schema migrations
  keys rotate                   add a new signing key; the old ones stay in the JWKS until their tokens expire
  org create NAME               create an organisation; prints its id
  user create -org ID -email E -password P [-role user|org_admin|global_admin]
                                create a user; prints its id
  revoke -org ID [-role R] [-device-type T] [-user ID] [-signed-in-before TIME]
         [-last-active-before TIME] [-reason TEXT] [-dry-run]
                                revoke every live session of one org that the filter selects
                                (times in RFC 3339); -dry-run counts them and writes nothing
  republish                     queue every live revocation in the outbox again, for a
                                REVOCATIONS stream that was lost or recreated; a running
                                sessiond's relay publishes them

environment: DATABASE_URL (all commands), KEY_ENCRYPTION_KEY (keys), ACCESS_TOKEN_TTL, TOKEN_LEEWAY
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "revokectl:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("see usage above")

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	dbURL := getenv("DATABASE_URL")
	if dbURL == "" {
		return errors.New("DATABASE_URL is required")
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	pool, err := postgres.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()

	cmd, rest := args[1], args[2:]
	switch {
	case cmd == "migrate" && len(rest) == 0:
		n, err := postgres.Migrate(ctx, pool)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "applied %d migration(s); schema is current\n", n)
		return nil
	case cmd == "keys" && len(rest) == 1 && rest[0] == "rotate":
		kek, err := sessions.ParseKEK(getenv("KEY_ENCRYPTION_KEY"))
		if err != nil {
			return err
		}
		cfg, err := sessiond.ServiceConfigFromEnv(getenv)
		if err != nil {
			return err
		}
		ks, err := sessions.NewKeyStore(pool, kek, sessions.KeyRetention(cfg), log)
		if err != nil {
			return err
		}
		kid, err := ks.Rotate(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new signing key %s; replicas pick it up within 30 s\n", kid)
		return nil
	case cmd == "org" && len(rest) == 2 && rest[0] == "create":
		svc, err := service(pool, getenv, log)
		if err != nil {
			return err
		}
		o, err := svc.CreateOrg(ctx, sessions.SystemPrincipal, rest[1], sessions.ClientMeta{})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, o.ID)
		return nil
	case cmd == "republish" && len(rest) == 0:
		svc, err := service(pool, getenv, log)
		if err != nil {
			return err
		}
		n, err := svc.Republish(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "queued %d live revocation(s) for publishing\n", n)
		return nil
	case cmd == "revoke":
		return revoke(ctx, pool, getenv, log, rest, stdout, stderr)
	case cmd == "user" && len(rest) >= 1 && rest[0] == "create":
		fs := flag.NewFlagSet("user create", flag.ContinueOnError)
		fs.SetOutput(stderr)
		org := fs.String("org", "", "organisation id")
		email := fs.String("email", "", "email")
		password := fs.String("password", "", "password (8 to 1024 bytes)")
		role := fs.String("role", "user", "user, org_admin or global_admin")
		if err := fs.Parse(rest[1:]); err != nil {
			return err
		}
		svc, err := service(pool, getenv, log)
		if err != nil {
			return err
		}
		u, err := svc.CreateUser(ctx, sessions.SystemPrincipal, sessions.NewUser{OrgID: *org, Email: *email, Password: *password, Role: *role}, sessions.ClientMeta{})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, u.ID)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return errUsage
}

// service builds a session service for administrative commands: they sign
// no token, so no key material is needed.
func service(pool *pgxpool.Pool, getenv func(string) string, log *slog.Logger) (*sessions.Service, error) {
	cfg, err := sessiond.ServiceConfigFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	return sessions.NewService(pool, nil, nil, cfg, sessions.NewMetrics(prometheus.NewRegistry()), nil, log)
}

// revoke is "revokectl revoke": a bulk revocation by filter, as the
// system (a global admin's scope, one org).
func revoke(ctx context.Context, pool *pgxpool.Pool, getenv func(string) string, log *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f sessions.BulkFilter
	fs.StringVar(&f.OrgID, "org", "", "organisation id (required)")
	fs.StringVar(&f.Role, "role", "", "only users of this role: user, org_admin or global_admin")
	fs.StringVar(&f.DeviceType, "device-type", "", "only sessions of this device type")
	fs.StringVar(&f.UserID, "user", "", "only this user's sessions")
	signedIn := fs.String("signed-in-before", "", "only sessions signed in before this RFC 3339 time")
	active := fs.String("last-active-before", "", "only sessions last active before this RFC 3339 time")
	fs.StringVar(&f.ReasonText, "reason", "", "why, for the audit log")
	fs.BoolVar(&f.DryRun, "dry-run", false, "count what matches and write nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("revoke: unexpected argument %q", fs.Arg(0))
	}
	for _, t := range []struct {
		name string
		in   string
		out  **time.Time
	}{{"-signed-in-before", *signedIn, &f.SignedInBefore}, {"-last-active-before", *active, &f.LastActiveBefore}} {
		if t.in == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.in)
		if err != nil {
			return fmt.Errorf("revoke: %s must be an RFC 3339 time such as 2026-12-01T09:00:00Z", t.name)
		}
		*t.out = &v
	}
	svc, err := service(pool, getenv, log)
	if err != nil {
		return err
	}
	res, err := svc.RevokeByFilter(ctx, sessions.SystemPrincipal, f, sessions.ClientMeta{})
	if err != nil {
		return err
	}
	if f.DryRun {
		fmt.Fprintf(stdout, "%d session(s) of %d user(s) match; nothing written\n", res.MatchedSessions, res.MatchedUsers)
		return nil
	}
	fmt.Fprintf(stdout, "revoked %d session(s) of %d user(s); revocation %s\n", res.RevokedSessions, res.RevokedUsers, res.RevocationID)
	return nil
}
