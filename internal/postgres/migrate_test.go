package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/sessionguard/revoke/internal/postgres"
	"github.com/sessionguard/revoke/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestConcurrentMigrationsTakeTurns: processes migrating one database at
// once (sessiond's init containers, one per pod of a new version) take
// turns under an advisory lock: one applies every migration, the others
// find none left, and none fails.
func TestConcurrentMigrationsTakeTurns(t *testing.T) {
	url := testenv.EmptyDatabaseURL(t)
	const n = 4
	applied := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, err := postgres.Connect(context.Background(), url)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			applied[i], errs[i] = postgres.Migrate(context.Background(), pool)
		}()
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migration %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	pool, err := postgres.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if pending, err := postgres.Pending(context.Background(), pool); err != nil || pending {
		t.Fatalf("pending %v, %v", pending, err)
	}
	var versions int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if total != versions {
		t.Fatalf("%d migrations applied in all by %d processes, %d in the schema: some ran twice or not at all (%v)", total, n, versions, applied)
	}
}
