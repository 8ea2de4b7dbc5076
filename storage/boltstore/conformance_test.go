package boltstore_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/storagetest"
)

// TestConformance runs the storage contract (package storagetest) against
// every backend: bbolt here, on real files in a temporary directory.
func TestConformance(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { storagetest.Run(t, boltBackend()) })
}

func boltBackend() storagetest.Backend {
	// bcrypt's cheapest cost: the suite is about the store, not bcrypt.
	opts := boltstore.Options{PasswordCost: bcrypt.MinCost}
	open := func(t *testing.T, path string) storage.Store {
		t.Helper()
		s, err := boltstore.Open(path, opts)
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return storagetest.Backend{
		New: func(t *testing.T) (storage.Store, string) {
			path := filepath.Join(t.TempDir(), "pochta.db")
			return open(t, path), path
		},
		Open: open,
		OpenBackup: func(t *testing.T, backup []byte) storage.Store {
			path := filepath.Join(t.TempDir(), "backup.db")
			if err := os.WriteFile(path, backup, 0o600); err != nil {
				t.Fatal(err)
			}
			return open(t, path)
		},
		NewWithQuota: func(t *testing.T, quota int64) storage.Store {
			quotaOpts := opts
			quotaOpts.Quota = quota
			s, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), quotaOpts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}
