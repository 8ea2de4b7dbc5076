package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

var _ storage.Importer = (*pgStore)(nil)

// importBatch bounds the messages (count and bytes) written in one
// transaction of Import.
const (
	importBatch      = 256
	importBatchBytes = 16 << 20
)

// Empty reports whether the database holds no users (storage.Importer).
func (s *pgStore) Empty(ctx context.Context) (bool, error) {
	var exists bool
	err := s.view(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users)`).Scan(&exists)
	})
	if err != nil {
		return false, fmt.Errorf("pgstore: empty: %w", err)
	}
	return !exists, nil
}

// Import writes what from walks, as it is (storage.Importer): users with
// their password hashes and subscriptions, mailboxes with their
// UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, messages with their UIDs,
// flags, internal dates (to the microsecond PostgreSQL keeps) and
// modseqs. Each user with its mailboxes is one transaction, messages go
// in batches of at most importBatch messages or importBatchBytes bytes;
// a failed Import leaves what it committed, so the caller imports into
// an empty database (Empty) and starts again from an empty one. Mailboxes
// get this database's IDs.
func (s *pgStore) Import(ctx context.Context, from storage.Exporter) error {
	im := &importer{s: s, ctx: ctx}
	err := from.Export(ctx, storage.ExportVisitor{
		User:    im.user,
		Mailbox: im.mailbox,
		Message: im.message,
	})
	if err == nil {
		err = im.flush()
	}
	if err != nil {
		return fmt.Errorf("pgstore: import: %w", err)
	}
	return nil
}

type importer struct {
	s   *pgStore
	ctx context.Context
	// ids maps the source's mailbox IDs of the current user to ours.
	ids     map[uint64]int64
	pending []*storage.ExportedMessage
	bytes   int
}

func (im *importer) user(u *storage.ExportedUser) error {
	if err := im.flush(); err != nil {
		return err
	}
	im.ids = map[uint64]int64{}
	rec := u.Record
	return im.s.writeOnce(im.ctx, func(tx pgx.Tx, _ *storage.Events) error {
		t := pgTx{ctx: im.ctx, tx: tx}
		if err := t.CreateUserRecord(&rec); err != nil {
			return err
		}
		for _, name := range u.Subscriptions {
			if _, err := tx.Exec(im.ctx, `INSERT INTO subscriptions (username, name) VALUES ($1, $2)
				ON CONFLICT DO NOTHING`, rec.Address, name); err != nil {
				return fmt.Errorf("user %s: subscription %q: %w", rec.Address, name, err)
			}
		}
		return nil
	})
}

func (im *importer) mailbox(m *storage.ExportedMailbox) error {
	if err := im.flush(); err != nil {
		return err
	}
	modseq := m.HighestModSeq
	if modseq == 0 {
		modseq = 1
	}
	return im.s.writeOnce(im.ctx, func(tx pgx.Tx, _ *storage.Events) error {
		var id int64
		if err := tx.QueryRow(im.ctx, `INSERT INTO mailboxes
			(username, name, special_use, uidvalidity, uidnext, subscribed, highestmodseq)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			m.User, m.Name, string(m.SpecialUse), int64(m.UIDValidity), int64(m.UIDNext), m.Subscribed, int64(modseq)).Scan(&id); err != nil {
			return fmt.Errorf("mailbox %s of %s: %w", m.Name, m.User, err)
		}
		if _, err := tx.Exec(im.ctx, `UPDATE store_meta SET value = greatest(value, $1) WHERE key = 'uidvalidity'`,
			int64(m.UIDValidity)); err != nil {
			return err
		}
		im.ids[m.ID] = id
		return nil
	})
}

func (im *importer) message(m *storage.ExportedMessage) error {
	if _, ok := im.ids[m.Mailbox]; !ok {
		return fmt.Errorf("message %d of %s: mailbox %d was not walked", m.UID, m.User, m.Mailbox)
	}
	im.pending = append(im.pending, m)
	im.bytes += len(m.Body)
	if len(im.pending) >= importBatch || im.bytes >= importBatchBytes {
		return im.flush()
	}
	return nil
}

// flush writes the pending messages and brings their mailboxes' counters
// up to date, in one transaction.
func (im *importer) flush() error {
	if len(im.pending) == 0 {
		return nil
	}
	err := im.s.writeOnce(im.ctx, func(tx pgx.Tx, _ *storage.Events) error {
		boxes := map[int64]bool{}
		for _, m := range im.pending {
			p, err := boltstore.PrepareMessage(&storage.NewMessage{Raw: m.Body, Flags: m.Flags, InternalDate: m.InternalDate}, time.Now())
			if err != nil {
				return fmt.Errorf("message %d of %s: %w", m.UID, m.User, err)
			}
			var mid *string
			if p.MessageID != "" {
				mid = &p.MessageID
			}
			id := im.ids[m.Mailbox]
			modseq := m.ModSeq
			if modseq == 0 {
				modseq = 1
			}
			if _, err := tx.Exec(im.ctx, `INSERT INTO messages
				(mailbox_id, uid, modseq, flags, internal_date, size, own, parsed, message_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				id, int64(m.UID), int64(modseq), flagStrings(p.Flags), m.InternalDate.Truncate(time.Microsecond),
				int64(len(m.Body)), nonNil(m.Body), nonNil(p.Parsed), mid); err != nil {
				return fmt.Errorf("message %d of %s: %w", m.UID, m.User, err)
			}
			boxes[id] = true
		}
		for id := range boxes {
			if _, err := tx.Exec(im.ctx, `UPDATE mailboxes SET
				messages = (SELECT count(*) FROM messages WHERE mailbox_id = $1),
				unseen = (SELECT count(*) FROM messages WHERE mailbox_id = $1 AND NOT seen),
				size = (SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = $1)
				WHERE id = $1`, id); err != nil {
				return err
			}
		}
		return nil
	})
	im.pending, im.bytes = im.pending[:0], 0
	return err
}
