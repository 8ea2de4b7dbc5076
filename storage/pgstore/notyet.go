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

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

func notYet(what string) error { return fmt.Errorf("storage: %s: %w", what, errNotYet) }

// ViewRecords implements storage.Records (not yet).
func (s *pgStore) ViewRecords(ctx context.Context, fn func(tx storage.RecordTx) error) error {
	return notYet("records")
}

// UpdateRecords implements storage.Records (not yet).
func (s *pgStore) UpdateRecords(ctx context.Context, size int, fn func(tx storage.RecordTx, ev *storage.Events) error) error {
	return notYet("records")
}

// PrepareNotices implements storage.Records (not yet).
func (s *pgStore) PrepareNotices(ns []*storage.Notice, now time.Time) ([]storage.PreparedNotice, int, error) {
	return nil, 0, notYet("notices")
}

// Append implements storage.Backend (not yet).
func (s *pgStore) Append(ctx context.Context, user, mailbox string, msg *storage.NewMessage) (*storage.Appended, error) {
	return nil, notYet("append")
}

// AppendMany implements storage.Backend (not yet).
func (s *pgStore) AppendMany(ctx context.Context, user, mailbox string, msgs []*storage.NewMessage) ([]*storage.Appended, error) {
	return nil, notYet("append")
}

// Usage implements storage.Backend (not yet).
func (s *pgStore) Usage(ctx context.Context, user string) (int64, error) {
	return 0, notYet("usage")
}

// Deliver implements storage.Backend (not yet).
func (s *pgStore) Deliver(ctx context.Context, d *storage.Delivery) (*storage.DeliveryResult, error) {
	return nil, notYet("deliver")
}

// UIDs implements storage.Backend (not yet).
func (s *pgStore) UIDs(ctx context.Context, user string, mailboxID uint64) ([]imap.UID, error) {
	return nil, notYet("uids")
}

// UIDsBefore implements storage.Backend (not yet).
func (s *pgStore) UIDsBefore(ctx context.Context, user string, mailboxID uint64, before imap.UID, limit int) ([]imap.UID, error) {
	return nil, notYet("uids")
}

// Messages implements storage.Backend (not yet).
func (s *pgStore) Messages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, opts storage.LoadOptions) ([]*storage.Message, error) {
	return nil, notYet("messages")
}

// StoreFlags implements storage.Backend (not yet).
func (s *pgStore) StoreFlags(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag) ([]storage.FlagUpdate, error) {
	return nil, notYet("store flags")
}

// StoreFlagsUnchangedSince implements storage.Backend (not yet).
func (s *pgStore) StoreFlagsUnchangedSince(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag, unchangedSince uint64) ([]storage.FlagUpdate, []imap.UID, error) {
	return nil, nil, notYet("store flags")
}

// Changes implements storage.Backend (not yet).
func (s *pgStore) Changes(ctx context.Context, user string, mailboxID uint64, since uint64) (*storage.ChangeSet, error) {
	return nil, notYet("changes")
}

// ReadBody implements storage.Backend (not yet).
func (s *pgStore) ReadBody(ctx context.Context, user string, mailboxID uint64, uid imap.UID, fn func(body *io.SectionReader) error) error {
	return notYet("read body")
}

// Expunge implements storage.Backend (not yet).
func (s *pgStore) Expunge(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) ([]imap.UID, error) {
	return nil, notYet("expunge")
}

// Copy implements storage.Backend (not yet).
func (s *pgStore) Copy(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*storage.CopyResult, error) {
	return nil, notYet("copy")
}

// Move implements storage.Backend (not yet).
func (s *pgStore) Move(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*storage.CopyResult, error) {
	return nil, notYet("move")
}

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
