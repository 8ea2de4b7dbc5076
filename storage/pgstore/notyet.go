package pgstore

// The parts of storage.Backend this backend does not implement yet: each
// returns errNotYet (wrapped with what was asked), never a wrong answer.
// The conformance groups that need them are not in
// TestConformancePostgresSoFar.

import (
	"context"
	"fmt"
	"time"

	"github.com/pochta/pochta/storage"
)

func notYet(what string) error { return fmt.Errorf("storage: %s: %w", what, errNotYet) }

// CreateWebSession implements storage.WebStore (not yet).
func (s *pgStore) CreateWebSession(ctx context.Context, address string, ttl time.Duration) (string, *storage.WebSession, error) {
	return "", nil, notYet("web sessions")
}

// WebSession implements storage.WebStore (not yet).
func (s *pgStore) WebSession(ctx context.Context, token string) (*storage.WebSession, error) {
	return nil, notYet("web sessions")
}

// DeleteWebSession implements storage.WebStore (not yet).
func (s *pgStore) DeleteWebSession(ctx context.Context, token string) error {
	return notYet("web sessions")
}

// WebPrefs implements storage.WebStore (not yet).
func (s *pgStore) WebPrefs(ctx context.Context, address string) (storage.WebPrefs, error) {
	return storage.WebPrefs{}, notYet("web preferences")
}

// SetWebPrefs implements storage.WebStore (not yet).
func (s *pgStore) SetWebPrefs(ctx context.Context, address string, p storage.WebPrefs) error {
	return notYet("web preferences")
}

var _ storage.Backend = (*pgStore)(nil)
