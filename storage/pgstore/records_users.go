package pgstore

// The records of users, the creation of one mailbox and the queue's
// listing and removal for the rules (storage/users.go,
// storage/queue_retention.go): RecordTx methods over one transaction.

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
)

// UserRecord implements storage.RecordTx; a write transaction locks the
// user's row for the rest of it.
func (t pgTx) UserRecord(address string) (*storage.UserRecord, error) {
	u, err := scanUser(t.tx.QueryRow(t.ctx, "SELECT "+userColumns+" FROM users WHERE address = $1"+t.forUpdate(), address))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("user %s: %w", address, storage.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &storage.UserRecord{User: u.User, PasswordHash: u.hash}, nil
}

// CreateUserRecord implements storage.RecordTx. PostgreSQL keeps times to
// the microsecond, so Created is stored (and read back) at that.
func (t pgTx) CreateUserRecord(rec *storage.UserRecord) error {
	settings, err := json.Marshal(rec.Settings)
	if err != nil {
		return fmt.Errorf("user %s: settings: %w", rec.Address, err)
	}
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO users (address, admin, password_hash, created_at, settings)
		VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (address) DO NOTHING`,
		rec.Address, rec.Admin, rec.PasswordHash, rec.Created.UTC().Truncate(time.Microsecond), string(settings))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("user %s: %w", rec.Address, storage.ErrExists)
	}
	return nil
}

// PutUserRecord implements storage.RecordTx.
func (t pgTx) PutUserRecord(rec *storage.UserRecord) error {
	settings, err := json.Marshal(rec.Settings)
	if err != nil {
		return fmt.Errorf("user %s: settings: %w", rec.Address, err)
	}
	tag, err := t.tx.Exec(t.ctx, `UPDATE users SET admin = $2, password_hash = $3, settings = $4::jsonb
		WHERE address = $1`, rec.Address, rec.Admin, rec.PasswordHash, string(settings))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("user %s: %w", rec.Address, storage.ErrNotFound)
	}
	return nil
}

// CreateMailbox implements storage.RecordTx.
func (t pgTx) CreateMailbox(user, name string, attr imap.MailboxAttr, subscribed bool, now time.Time) (uint64, error) {
	return createMailbox(t.ctx, t.tx, user, name, attr, subscribed)
}

// QueueEntriesAfter implements storage.RecordTx.
func (t pgTx) QueueEntriesAfter(after uint64, max int) ([]*storage.QueueEntry, error) {
	rows, err := t.tx.Query(t.ctx, `SELECT id, entry FROM queue WHERE id > $1 AND entry IS NOT NULL
		ORDER BY id LIMIT $2`, int64(after), max)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*storage.QueueEntry
	for rows.Next() {
		var id uint64
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			return nil, err
		}
		e, err := decodeEntry(id, b)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RemoveQueueEntry implements storage.RecordTx: the row goes, and with it
// the body (the shared-body trigger drops a body no row refers to).
func (t pgTx) RemoveQueueEntry(e *storage.QueueEntry) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM queue WHERE id = $1", int64(e.ID))
	return err
}
