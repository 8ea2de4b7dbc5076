package pgstore

// The parts of storage.Backend this backend does not implement yet: each
// returns errNotYet (wrapped with what was asked), never a wrong answer.
// The conformance groups that need them are not in
// TestConformancePostgresSoFar.

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pochta/pochta/storage"
)

func notYet(what string) error { return fmt.Errorf("storage: %s: %w", what, errNotYet) }

// QueueEntries implements storage.Backend (not yet).
func (s *pgStore) QueueEntries(ctx context.Context, f storage.QueueFilter) ([]storage.QueueEntry, error) {
	return nil, notYet("queue")
}

// QueueEntry implements storage.Backend (not yet).
func (s *pgStore) QueueEntry(ctx context.Context, id uint64) (*storage.QueueEntry, error) {
	return nil, notYet("queue")
}

// QueueBody implements storage.Backend (not yet).
func (s *pgStore) QueueBody(ctx context.Context, id uint64, w io.Writer) (int64, error) {
	return 0, notYet("queue")
}

// QueueCounts implements storage.Backend (not yet).
func (s *pgStore) QueueCounts(ctx context.Context) (storage.QueueCounts, error) {
	return storage.QueueCounts{}, notYet("queue")
}

// DueQueueEntries implements storage.Backend (not yet).
func (s *pgStore) DueQueueEntries(ctx context.Context, now time.Time, max int) ([]storage.QueueEntry, time.Time, error) {
	return nil, time.Time{}, notYet("queue")
}

// RemoveSettledQueueEntries implements storage.Backend (not yet).
func (s *pgStore) RemoveSettledQueueEntries(ctx context.Context, cutoff time.Time, after uint64) (*storage.QueueRemoved, error) {
	return nil, notYet("queue")
}

// DeleteQueueEntry implements storage.Backend (not yet).
func (s *pgStore) DeleteQueueEntry(ctx context.Context, id uint64) error {
	return notYet("queue")
}

// QueueEntriesPage implements storage.QueuePageStore (not yet).
func (s *pgStore) QueueEntriesPage(ctx context.Context, f storage.QueueFilter, p storage.QueuePage) ([]storage.QueueEntry, uint64, error) {
	return nil, 0, notYet("queue")
}

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

// Check implements storage.Backend (not yet).
func (s *pgStore) Check(ctx context.Context, repair bool) (*storage.CheckReport, error) {
	return nil, notYet("check")
}

var _ storage.Backend = (*pgStore)(nil)
