// Command revokectl is the operator's CLI: schema migrations, signing-key
// rotation, organisations and users, bulk revocations and republishing the
// live blocklist. It parses its command line with kong, prints its help
// without a database, exits 2 on a usage error and 1 when the work fails.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/services/sessions"
	"github.com/sessionguard/revoke/services/sessions/sessiond"
)

// cli is revokectl's command line.
type cli struct {
	Migrate   migrateCmd   `cmd:"" help:"Apply pending schema migrations, one by one."`
	Keys      keysCmd      `cmd:"" help:"Signing keys."`
	Org       orgCmd       `cmd:"" help:"Organisations."`
	User      userCmd      `cmd:"" help:"Users."`
	Revoke    revokeCmd    `cmd:"" help:"Revoke every live session of one org that a filter selects."`
	Republish republishCmd `cmd:"" help:"Queue every live revocation in the outbox again, for a REVOCATIONS stream that was lost or recreated (with --signals, the Shared Signals signals of that long too); a running sessiond's relay publishes them."`
}

const description = `The operator's CLI of the session revocation service.

Environment: DATABASE_URL (every command), KEY_ENCRYPTION_KEY (keys rotate),
ACCESS_TOKEN_TTL, TOKEN_LEEWAY. Flags take one dash or two (-org, --org).`

// env is what every command runs with: the environment, the streams, and
// the database once a command asks for it.
type env struct {
	ctx            context.Context
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	pool           *pgxpool.Pool
}

// errUsage wraps a command line that could not be parsed: exit code 2.
var errUsage = errors.New("usage")

// db connects to DATABASE_URL and, unless migrating, checks that the schema
// is current, so that a command never meets a half-made database.
func (e *env) db(migrating bool) (*pgxpool.Pool, error) {
	if e.pool != nil {
		return e.pool, nil
	}
	url := e.getenv("DATABASE_URL")
	if url == "" {
		return nil, errors.New("DATABASE_URL is required: the PostgreSQL connection string (the dev stack prints the one to export)")
	}
	pool, err := postgres.Connect(e.ctx, url)
	if err != nil {
		return nil, err
	}
	if !migrating {
		pending, err := postgres.Pending(e.ctx, pool)
		if err != nil {
			pool.Close()
			return nil, err
		}
		if pending {
			pool.Close()
			return nil, errors.New("the database schema is not current: run `revokectl migrate` first")
		}
	}
	e.pool = pool
	return pool, nil
}

// service is a session service for administrative commands: they sign no
// token, so no key material is needed.
func (e *env) service() (*sessions.Service, error) {
	pool, err := e.db(false)
	if err != nil {
		return nil, err
	}
	cfg, err := sessiond.ServiceConfigFromEnv(e.getenv)
	if err != nil {
		return nil, err
	}
	return sessions.NewService(pool, nil, nil, cfg, sessions.NewMetrics(prometheus.NewRegistry()), nil, e.log)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	var exit exitCode
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "revokectl:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "revokectl:", err)
		os.Exit(1)
	}
}

// exitCode is kong asking to exit (after --help: 0).
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit %d", int(c)) }

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	var c cli
	parser, err := kong.New(&c, kong.Name("revokectl"), kong.Description(description), kong.Writers(stdout, stderr),
		kong.UsageOnError(), kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Exit(func(code int) { panic(exitCode(code)) }))
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			if code != 0 {
				err = exitCode(code)
			}
		}
	}()
	argv := dashes(args[1:], flagNames(parser.Model.Node))
	if len(argv) == 0 {
		_, _ = parser.Parse([]string{"--help"})
		return nil
	}
	kctx, err := parser.Parse(argv)
	if err != nil {
		if first := argv[0]; !strings.HasPrefix(first, "-") && !known(parser, first) {
			return fmt.Errorf("%w: unknown command %q (revokectl --help lists them)", errUsage, first)
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	e := &env{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr, log: slog.New(slog.NewJSONHandler(stderr, nil))}
	defer func() {
		if e.pool != nil {
			e.pool.Close()
		}
	}()
	return kctx.Run(e)
}

// known reports whether name is one of the top commands.
func known(p *kong.Kong, name string) bool {
	for _, n := range p.Model.Children {
		if n.Name == name {
			return true
		}
	}
	return false
}

// dashes lets a flag take one dash as well as two (-org for --org), as
// revokectl's flags did before kong: a word with one dash whose name is one
// of the flags. Values (a password starting with a dash) and everything
// after "--" are left as they are.
func dashes(args []string, flags map[string]bool) []string {
	out := make([]string, len(args))
	done := false
	for i, a := range args {
		if a == "--" {
			done = true
		}
		if !done && len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if flags[name] {
				a = "-" + a
			}
		}
		out[i] = a
	}
	return out
}

// flagNames are the long names of every flag of n and its commands.
func flagNames(n *kong.Node) map[string]bool {
	names := map[string]bool{}
	var walk func(*kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			names[f.Name] = true
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(n)
	return names
}
