package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrateLockKey is the advisory lock key serialising migrations across nodes.
const migrateLockKey = 0x706f6368_7461_0001 // "pochta" + 1

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q: name must start with a positive number and '_'", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations not numbered 1..n: %s is at position %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary's migrations produce.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// Migrate brings the database up to this binary's schema version. It is safe
// to call from several nodes at once: each migration is applied exactly once.
// It returns the number of migrations this call applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return 0, err
	}
	applied := 0
	for {
		done, err := migrateOne(ctx, pool, ms)
		if err != nil {
			return applied, err
		}
		if !done {
			return applied, nil
		}
		applied++
	}
}

// migrateOne applies the next pending migration, reporting whether it did.
func migrateOne(ctx context.Context, pool *pgxpool.Pool, ms []migration) (bool, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockKey)); err != nil {
		return false, fmt.Errorf("migrate: taking advisory lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return false, fmt.Errorf("migrate: creating schema_version: %w", err)
	}
	var cur int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&cur); err != nil {
		return false, fmt.Errorf("migrate: reading schema_version: %w", err)
	}
	if cur > len(ms) {
		return false, fmt.Errorf("migrate: database schema version %d is newer than this binary's %d; upgrade pochta", cur, len(ms))
	}
	if cur == len(ms) {
		return false, tx.Commit(ctx)
	}
	m := ms[cur]
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return false, fmt.Errorf("migrate: applying %s: %w", m.name, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
		return false, fmt.Errorf("migrate: recording %s: %w", m.name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("migrate: committing %s: %w", m.name, err)
	}
	return true, nil
}

// Connect connects a pool to dsn and migrates the schema.
func Connect(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connecting: %w", err)
	}
	if _, err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
