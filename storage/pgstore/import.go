package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

var _ storage.Importer = (*pgStore)(nil)

// Empty reports whether the database holds no users, no read-tracking
// records and no queue entries (storage.Importer).
func (s *pgStore) Empty(ctx context.Context) (bool, error) {
	var exists bool
	err := s.view(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM tracking_records)
			OR EXISTS (SELECT 1 FROM queue)`).Scan(&exists)
	})
	if err != nil {
		return false, fmt.Errorf("pgstore: empty: %w", err)
	}
	return !exists, nil
}

// Import writes what from walks, as it is (storage.Importer): users with
// their password hashes, subscriptions, web preferences, Sent
// de-duplication index and deleted mailboxes' UIDNEXT; mailboxes with their
// UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ and expunge tombstones; messages
// with their UIDs, flags, internal dates (to the microsecond PostgreSQL
// keeps) and modseqs, and the unread index of the INBOXes, a body the
// source stored once for several copies stored once again; read-tracking
// records under their IDs; queue entries under their IDs with their bodies
// (shared as in the source), every status kept and the leases cleared; the
// relay's health, day counters and alerts. Each user with its mailboxes is
// one transaction, the rest goes in batches of at most
// storage.ImportBatchRecords records or storage.ImportBatchBytes bytes; a
// failed Import leaves what it committed, so the caller imports into an
// empty database (Empty) and starts again from an empty one. Mailboxes get
// this database's IDs, and every record that names one is rewritten to
// match.
func (s *pgStore) Import(ctx context.Context, from storage.Exporter) error {
	im := &importer{s: s, ctx: ctx, bodies: map[uint64]int64{}}
	im.batch.Write = im.write
	err := from.Export(ctx, storage.ExportVisitor{
		User:    im.user,
		Mailbox: im.mailbox,
		Message: im.message,
		Tracking: func(t *storage.ExportedTracking) error {
			return im.add(0, func(tx pgTx) error { return storage.ImportTracking(tx, t, &im.ids) })
		},
		QueueEntry: func(e *storage.ExportedQueueEntry) error {
			return im.add(len(e.Entry.Body), func(tx pgTx) error { return im.queueEntry(tx, e) })
		},
		QueueState: func(st *storage.ExportedQueueState) error {
			return im.add(0, func(tx pgTx) error { return storage.ImportQueueState(tx, st) })
		},
	})
	if err == nil {
		err = im.endUser()
	}
	if err == nil {
		err = im.flush()
	}
	if err == nil {
		err = s.writeOnce(ctx, func(tx pgx.Tx, _ *storage.Events) error {
			_, err := tx.Exec(ctx, `SELECT setval('tracking_record_ids', greatest(coalesce(max(id), 0), 1), max(id) IS NOT NULL) FROM tracking_records;
				SELECT setval(pg_get_serial_sequence('queue', 'id'), greatest(coalesce(max(id), 0), 1), max(id) IS NOT NULL) FROM queue`)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("pgstore: import: %w", err)
	}
	return nil
}

type importer struct {
	s   *pgStore
	ctx context.Context
	// ids maps the source's mailbox IDs to ours; inbox holds our IDs of
	// INBOXes (their unread messages are indexed).
	ids   storage.ImportIDs
	inbox map[int64]bool
	// walked is the user being walked, whose Sent index is written once its
	// mailboxes have IDs.
	walked *storage.ExportedUser
	// batch holds the writes of the next transaction, boxes the mailboxes
	// whose counters it changes.
	batch storage.ImportBatch[pgTx]
	boxes map[int64]bool
	// bodies maps the source's shared bodies to ours (a failed batch
	// fails the import, so none points at a rolled-back row).
	bodies map[uint64]int64
	// rows are the batch's messages, written with one COPY at its end
	// (nothing in a batch reads the messages table before then).
	rows [][]any
}

// messageColumns are the columns rows holds, in order.
var messageColumns = []string{"mailbox_id", "uid", "modseq", "flags", "internal_date", "size", "own", "shared_body_id", "parsed", "message_id"}

// split returns the part of body a copy keeps in its own row and the
// shared body the rest is (nil: the copy keeps all of it), storing that
// body on first use.
func (im *importer) split(t pgTx, part storage.SharedPart, body []byte) ([]byte, *int64, error) {
	if part.ID == 0 || part.Offset < 0 || part.Offset >= len(body) {
		return body, nil, nil
	}
	id, ok := im.bodies[part.ID]
	if !ok {
		if err := t.tx.QueryRow(t.ctx, "INSERT INTO bodies (sha256, size, content) VALUES (sha256($1), length($1), $1) RETURNING id",
			body[part.Offset:]).Scan(&id); err != nil {
			return nil, nil, fmt.Errorf("shared body: %w", err)
		}
		im.bodies[part.ID] = id
	}
	return body[:part.Offset], &id, nil
}

// add queues one write after the users' part of the walk.
func (im *importer) add(size int, fn func(tx pgTx) error) error {
	if err := im.endUser(); err != nil {
		return err
	}
	return im.batch.Add(size, fn)
}

func (im *importer) flush() error { return im.batch.Flush() }

// endUser writes the Sent index of the user walked last.
func (im *importer) endUser() error {
	u := im.walked
	if u == nil {
		return nil
	}
	im.walked = nil
	if err := im.flush(); err != nil {
		return err
	}
	return im.s.writeOnce(im.ctx, func(tx pgx.Tx, _ *storage.Events) error {
		return storage.ImportSentIDs(pgTx{ctx: im.ctx, tx: tx}, u.Record.Address, u.SentIDs, &im.ids)
	})
}

func (im *importer) user(u *storage.ExportedUser) error {
	if err := im.endUser(); err != nil {
		return err
	}
	rec := u.Record
	prefs, err := json.Marshal(u.WebPrefs)
	if err != nil {
		return fmt.Errorf("user %s: web preferences: %w", rec.Address, err)
	}
	err = im.s.writeOnce(im.ctx, func(tx pgx.Tx, _ *storage.Events) error {
		t := pgTx{ctx: im.ctx, tx: tx}
		if err := t.CreateUserRecord(&rec); err != nil {
			return err
		}
		if _, err := tx.Exec(im.ctx, "UPDATE users SET web_prefs = $2::jsonb WHERE address = $1", rec.Address, string(prefs)); err != nil {
			return fmt.Errorf("user %s: web preferences: %w", rec.Address, err)
		}
		for name, next := range u.Graves {
			if _, err := tx.Exec(im.ctx, `INSERT INTO mailbox_graves (username, name, uidnext) VALUES ($1, $2, $3)`,
				rec.Address, name, int64(next)); err != nil {
				return fmt.Errorf("user %s: deleted mailbox %q: %w", rec.Address, name, err)
			}
		}
		for _, name := range u.Subscriptions {
			if _, err := tx.Exec(im.ctx, `INSERT INTO subscriptions (username, name) VALUES ($1, $2)
				ON CONFLICT DO NOTHING`, rec.Address, name); err != nil {
				return fmt.Errorf("user %s: subscription %q: %w", rec.Address, name, err)
			}
		}
		return nil
	})
	if err == nil {
		im.walked = u
	}
	return err
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
			(username, name, special_use, uidvalidity, uidnext, subscribed, highestmodseq, vanished_floor)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			m.User, m.Name, string(m.SpecialUse), int64(m.UIDValidity), int64(m.UIDNext), m.Subscribed, int64(modseq), int64(m.VanishedFloor)).Scan(&id); err != nil {
			return fmt.Errorf("mailbox %s of %s: %w", m.Name, m.User, err)
		}
		for _, v := range m.Vanished {
			if _, err := tx.Exec(im.ctx, `INSERT INTO expunged (mailbox_id, uid, modseq, expunged_at) VALUES ($1, $2, $3, $4)`,
				id, int64(v.UID), int64(v.ModSeq), v.Expunged); err != nil {
				return fmt.Errorf("mailbox %s of %s: tombstone %d: %w", m.Name, m.User, v.UID, err)
			}
		}
		if _, err := tx.Exec(im.ctx, `UPDATE store_meta SET value = greatest(value, $1) WHERE key = 'uidvalidity'`,
			int64(m.UIDValidity)); err != nil {
			return err
		}
		im.ids.Set(m.User, m.ID, uint64(id))
		if m.Name == storage.Inbox {
			if im.inbox == nil {
				im.inbox = map[int64]bool{}
			}
			im.inbox[id] = true
		}
		return nil
	})
}

func (im *importer) message(m *storage.ExportedMessage) error {
	dst, ok := im.ids.Get(m.User, m.Mailbox)
	if !ok {
		return fmt.Errorf("message %d of %s: mailbox %d was not walked", m.UID, m.User, m.Mailbox)
	}
	id := int64(dst)
	return im.batch.Add(len(m.Body), func(tx pgTx) error {
		if im.boxes == nil {
			im.boxes = map[int64]bool{}
		}
		im.boxes[id] = true
		return im.insertMessage(tx, id, m)
	})
}

func (im *importer) insertMessage(t pgTx, id int64, m *storage.ExportedMessage) error {
	p, err := boltstore.PrepareMessage(&storage.NewMessage{Raw: m.Body, Flags: m.Flags, InternalDate: m.InternalDate}, time.Now())
	if err != nil {
		return fmt.Errorf("message %d of %s: %w", m.UID, m.User, err)
	}
	var mid *string
	if p.MessageID != "" {
		mid = &p.MessageID
	}
	modseq := m.ModSeq
	if modseq == 0 {
		modseq = 1
	}
	date := m.InternalDate.Truncate(time.Microsecond)
	own, shared, err := im.split(t, m.Shared, m.Body)
	if err != nil {
		return fmt.Errorf("message %d of %s: %w", m.UID, m.User, err)
	}
	im.rows = append(im.rows, []any{id, int64(m.UID), int64(modseq), flagStrings(p.Flags), date,
		int64(len(m.Body)), nonNil(own), shared, nonNil(p.Parsed), mid})
	if im.inbox[id] && !slices.Contains(p.Flags, imap.FlagSeen) {
		if err := t.PutUnread(storage.UnreadEntryOf(m.User, uint64(id), m.UID, date)); err != nil {
			return fmt.Errorf("message %d of %s: unread index: %w", m.UID, m.User, err)
		}
	}
	return nil
}

// queueEntry writes one queue entry under its ID with its body, its lease
// cleared.
func (im *importer) queueEntry(t pgTx, e *storage.ExportedQueueEntry) error {
	c := storage.ImportedQueueEntry(e.Entry)
	if c.Rev > 0 {
		c.Rev-- // saveEntry counts this write
	}
	own, shared, err := im.split(t, e.Shared, []byte(c.Body))
	if err != nil {
		return fmt.Errorf("queue entry %d: %w", c.ID, err)
	}
	if _, err := t.tx.Exec(t.ctx, `INSERT INTO queue (id, source, own, shared_body_id) VALUES ($1, $2, $3, $4)`,
		int64(c.ID), c.Source, nonNil(own), shared); err != nil {
		return fmt.Errorf("queue entry %d: %w", c.ID, err)
	}
	var ev storage.Events
	return saveEntry(t, nil, c, &ev)
}

// write writes one batch and brings the counters of the mailboxes it
// changed up to date, in one transaction.
func (im *importer) write(fns []func(pgTx) error, _ int) error {
	return im.s.writeOnce(im.ctx, func(tx pgx.Tx, _ *storage.Events) error {
		t := pgTx{ctx: im.ctx, tx: tx}
		clear(im.boxes)
		im.rows = im.rows[:0]
		for _, fn := range fns {
			if err := fn(t); err != nil {
				return err
			}
		}
		if len(im.rows) > 0 {
			if _, err := tx.CopyFrom(im.ctx, pgx.Identifier{"messages"}, messageColumns, pgx.CopyFromRows(im.rows)); err != nil {
				return fmt.Errorf("copying %d messages: %w", len(im.rows), err)
			}
		}
		for id := range im.boxes {
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
}
