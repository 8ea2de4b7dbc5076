package boltstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
)

func TestAuthenticateUnknownUserTakesAsLongAsWrongPassword(t *testing.T) {
	// A cost high enough that a bcrypt comparison dominates everything else.
	const cost = 9
	s, err := openTestBolt(filepath.Join(t.TempDir(), "pochta.db"), Options{PasswordCost: cost})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	fastest := func(addr string) time.Duration {
		best := time.Hour
		for range 5 {
			start := time.Now()
			if _, err := s.Authenticate(ctx, addr, "wrong"); err == nil {
				t.Fatal("wrong password accepted")
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	wrong := fastest("alice@example.com")
	unknown := fastest("nobody@example.com")
	// Without the dummy comparison an unknown user answers in microseconds,
	// thousands of times faster; the bound is loose (a tenth) because other
	// test packages run on the same cores at the same time.
	if unknown < wrong/10 {
		t.Errorf("unknown user answered in %v, wrong password in %v", unknown, wrong)
	}
}

func TestSecondOpenFailsWithErrLocked(t *testing.T) {
	s, path := openTestStore(t)
	opts := testOptions()
	opts.LockTimeout = 100 * time.Millisecond
	start := time.Now()
	_, err := Open(path, opts)
	wantErr(t, err, storage.ErrLocked, "second open")
	if !strings.Contains(err.Error(), "database is in use by another process") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should say the database is in use and name it", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s2.Close()
}

func TestDatabaseFileIsPrivate(t *testing.T) {
	_, path := openTestStore(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode %v, want 0600", mode)
	}
}
