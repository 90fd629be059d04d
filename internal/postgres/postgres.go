// Package postgres holds the PostgreSQL plumbing shared by the services: the
// connection pool, the schema migrations and unsynchronised writes.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/sessionguard/revoke/migrations"
)

// DefaultMaxConns is the pool size unless DATABASE_URL sets pool_max_conns.
const DefaultMaxConns = 16

// Connect opens a pool to url and checks that the server answers.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DATABASE_URL: %w", err)
	}
	// pgxpool's default (4 on two cores) leaves too few commits in flight
	// to share a WAL flush; 16 measured best on two cores. pool_max_conns in
	// DATABASE_URL overrides it.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: ping: %w", err)
	}
	return pool, nil
}

func provider(pool *pgxpool.Pool) (*goose.Provider, func() error, error) {
	// An advisory lock held for the whole run: several processes may
	// migrate at once (sessiond's init containers, one per pod of a new
	// version), and each but the first waits, then finds nothing to do.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(5, 120)) // 10 minutes
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	return p, db.Close, nil
}

// Migrate applies every pending migration and returns how many it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	p, closeDB, err := provider(pool)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("postgres: migrate: %w", err)
	}
	return len(res), nil
}

// Applied is one migration MigrateEach applied.
type Applied struct {
	Version  int64
	File     string
	Duration time.Duration
}

// MigrateEach applies the pending migrations one at a time, telling each
// to applied as it is done, and returns how many it applied.
func MigrateEach(ctx context.Context, pool *pgxpool.Pool, applied func(Applied)) (int, error) {
	p, closeDB, err := provider(pool)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	n := 0
	for {
		res, err := p.UpByOne(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("postgres: migrate: %w", err)
		}
		n++
		if applied != nil {
			applied(Applied{Version: res.Source.Version, File: filepath.Base(res.Source.Path), Duration: res.Duration})
		}
	}
}

// Pending reports whether migrations remain to be applied.
func Pending(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	p, closeDB, err := provider(pool)
	if err != nil {
		return false, err
	}
	defer closeDB()
	return p.HasPending(ctx)
}

// ExecUnsynced runs one statement in a transaction of its own whose commit
// does not wait for the WAL to reach the disk (synchronous_commit off), in
// one round trip. It is for writes whose loss in a crash costs nothing (a
// row's "sent" mark, an advisory timestamp): the commit is not held up by an
// fsync, and neither are the row locks it releases. A connection left inside
// a failed transaction is closed by the pool on release.
func ExecUnsynced(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit TO off")
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	return pool.SendBatch(ctx, b).Close()
}

// CreateDatabase connects to the server of adminURL and creates database
// name there, as a copy of template unless template is "". With ifMissing,
// a database of that name that exists already is left as it is. Names are
// quoted as identifiers.
func CreateDatabase(ctx context.Context, adminURL, name, template string, ifMissing bool) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(ctx)
	if ifMissing {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil || exists {
			return err
		}
	}
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("postgres: create database %s: %w", name, err)
	}
	return nil
}
