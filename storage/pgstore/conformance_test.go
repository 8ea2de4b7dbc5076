package pgstore_test

import (
	"context"
	"log/slog"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/pgstore"
	"github.com/pochta/pochta/storage/storagetest"
)

// TestConformance runs the storage contract (package storagetest) against
// the PostgreSQL backend, each subtest on a fresh database of a throwaway
// cluster (internal/pgtest). Backup is pg_dump's job (Backend.NoBackup).
func TestConformance(t *testing.T) {
	t.Run("postgres", func(t *testing.T) { storagetest.Run(t, postgresBackend()) })
}

func postgresBackend() storagetest.Backend {
	// bcrypt's cheapest cost: the suite is about the store, not bcrypt.
	// The throwaway cluster runs with fsync off; its durability warning
	// (tested in durability_test.go) would only fill the log.
	opts := pgstore.Options{PasswordCost: bcrypt.MinCost, Logger: slog.New(slog.DiscardHandler)}
	open := func(t *testing.T, dsn string, opts pgstore.Options) storage.Store {
		t.Helper()
		s, err := pgstore.Open(context.Background(), dsn, opts)
		if err != nil {
			t.Fatalf("open %s: %v", pgstore.Redacted(dsn), err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return storagetest.Backend{
		New: func(t *testing.T) (storage.Store, string) {
			dsn := pgtest.New(t)
			return open(t, dsn, opts), dsn
		},
		Open: func(t *testing.T, dsn string) storage.Store { return open(t, dsn, opts) },
		NewWithQuota: func(t *testing.T, quota int64) storage.Store {
			quotaOpts := opts
			quotaOpts.Quota = quota
			return open(t, pgtest.New(t), quotaOpts)
		},
		NoBackup: "PostgreSQL databases are backed up with pg_dump or pg_basebackup",
	}
}
