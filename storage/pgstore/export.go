package pgstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
)

var _ storage.Exporter = (*pgStore)(nil)

// Export walks the whole database in one read-only REPEATABLE READ
// transaction, so it sees one commit (storage.Exporter): users by address
// (byte order), their mailboxes by ID, messages by UID with their bytes
// (a shared body joined to each copy, and named by SharedPart), the counters and modseqs as
// stored; then the read-tracking records, the queue's entries with their
// bodies, and the queue's state. It only reads. Web sessions are not
// exported.
func (s *pgStore) Export(ctx context.Context, v storage.ExportVisitor) error {
	err := s.view(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+userColumns+`, web_prefs FROM users ORDER BY address COLLATE "C"`)
		if err != nil {
			return err
		}
		var users []*storage.ExportedUser
		for rows.Next() {
			var u userRow
			var settings, prefs []byte
			if err := rows.Scan(&u.Address, &u.Admin, &u.Created, &settings, &u.hash, &prefs); err != nil {
				rows.Close()
				return err
			}
			eu := &storage.ExportedUser{Record: storage.UserRecord{User: u.User, PasswordHash: u.hash}}
			eu.Record.Created = eu.Record.Created.UTC()
			if err := json.Unmarshal(settings, &eu.Record.Settings); err != nil {
				rows.Close()
				return fmt.Errorf("user %s: settings: %w", u.Address, err)
			}
			if err := json.Unmarshal(prefs, &eu.WebPrefs); err != nil {
				rows.Close()
				return fmt.Errorf("user %s: web preferences: %w", u.Address, err)
			}
			users = append(users, eu)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, u := range users {
			if err := exportUser(ctx, tx, u, v); err != nil {
				return fmt.Errorf("user %s: %w", u.Record.Address, err)
			}
		}
		if err := exportTracking(ctx, tx, v); err != nil {
			return err
		}
		if err := exportQueue(ctx, tx, v); err != nil {
			return err
		}
		return exportQueueState(ctx, tx, v)
	})
	if err != nil {
		return fmt.Errorf("storage: export: %w", err)
	}
	return nil
}

func exportUser(ctx context.Context, tx pgx.Tx, u *storage.ExportedUser, v storage.ExportVisitor) error {
	addr := u.Record.Address
	rows, err := tx.Query(ctx, `SELECT name FROM subscriptions WHERE username = $1 ORDER BY name COLLATE "C"`, addr)
	if err != nil {
		return err
	}
	if u.Subscriptions, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return err
	}
	if u.Subscriptions == nil {
		u.Subscriptions = []string{}
	}
	rows, err = tx.Query(ctx, `SELECT message_id, mailbox_id, uid, stored FROM sent_ids WHERE username = $1
		ORDER BY message_id COLLATE "C"`, addr)
	if err != nil {
		return err
	}
	if u.SentIDs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.ExportedSentID, error) {
		var s storage.ExportedSentID
		var box, uid int64
		err := r.Scan(&s.MessageID, &box, &uid, &s.Entry.Stored)
		s.Entry.Mailbox, s.Entry.UID = uint64(box), imap.UID(uid)
		return s, err
	}); err != nil {
		return err
	}
	rows, err = tx.Query(ctx, "SELECT name, uidnext FROM mailbox_graves WHERE username = $1", addr)
	if err != nil {
		return err
	}
	var name string
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &next}, func() error {
		if u.Graves == nil {
			u.Graves = map[string]uint32{}
		}
		u.Graves[name] = uint32(min(next, 1<<32-1))
		return nil
	}); err != nil {
		return err
	}
	if err := v.User(u); err != nil {
		return err
	}
	rows, err = tx.Query(ctx, `SELECT id, name, special_use, uidvalidity, uidnext, subscribed, highestmodseq, vanished_floor
		FROM mailboxes WHERE username = $1 ORDER BY id`, addr)
	if err != nil {
		return err
	}
	boxes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*storage.ExportedMailbox, error) {
		m := &storage.ExportedMailbox{User: addr}
		var id, uv, next, modseq, floor int64
		var attr string
		err := r.Scan(&id, &m.Name, &attr, &uv, &next, &m.Subscribed, &modseq, &floor)
		m.ID, m.SpecialUse, m.UIDValidity, m.UIDNext, m.HighestModSeq = uint64(id), imap.MailboxAttr(attr), uint32(uv), uint32(next), uint64(modseq)
		m.VanishedFloor = uint64(floor)
		return m, err
	})
	if err != nil {
		return err
	}
	for _, m := range boxes {
		rows, err := tx.Query(ctx, "SELECT uid, modseq, expunged_at FROM expunged WHERE mailbox_id = $1 ORDER BY modseq, uid", int64(m.ID))
		if err != nil {
			return err
		}
		if m.Vanished, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Tombstone, error) {
			var uid, modseq int64
			var v storage.Tombstone
			err := r.Scan(&uid, &modseq, &v.Expunged)
			v.UID, v.ModSeq, v.Expunged = imap.UID(uid), uint64(modseq), v.Expunged.UTC()
			return v, err
		}); err != nil {
			return err
		}
		if err := v.Mailbox(m); err != nil {
			return err
		}
		if err := exportMessages(ctx, tx, m, v); err != nil {
			return fmt.Errorf("mailbox %s: %w", m.Name, err)
		}
	}
	return nil
}

func exportMessages(ctx context.Context, tx pgx.Tx, box *storage.ExportedMailbox, v storage.ExportVisitor) error {
	rows, err := tx.Query(ctx, `SELECT m.uid, m.flags, m.internal_date, m.modseq, m.own || coalesce(b.content, ''::bytea),
			coalesce(m.shared_body_id, 0), length(m.own)
		FROM messages m LEFT JOIN bodies b ON b.id = m.shared_body_id
		WHERE m.mailbox_id = $1 ORDER BY m.uid`, int64(box.ID))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		m := &storage.ExportedMessage{User: box.User, Mailbox: box.ID}
		var uid, modseq int64
		var flags []string
		if err := rows.Scan(&uid, &flags, &m.InternalDate, &modseq, &m.Body, &m.Shared.ID, &m.Shared.Offset); err != nil {
			return err
		}
		m.UID, m.ModSeq, m.InternalDate = imap.UID(uid), uint64(modseq), m.InternalDate.UTC()
		for _, f := range flags {
			m.Flags = append(m.Flags, imap.Flag(f))
		}
		if err := v.Message(m); err != nil {
			return err
		}
	}
	return rows.Err()
}

func exportTracking(ctx context.Context, tx pgx.Tx, v storage.ExportVisitor) error {
	rows, err := tx.Query(ctx, "SELECT id, rec FROM tracking_records ORDER BY id")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t storage.ExportedTracking
		var b []byte
		if err := rows.Scan(&t.ID, &b); err != nil {
			return err
		}
		if json.Unmarshal(b, &t.Record) != nil {
			continue // the rules ignore an undecodable record
		}
		if err := v.VisitTracking(&t); err != nil {
			return err
		}
	}
	return rows.Err()
}

func exportQueue(ctx context.Context, tx pgx.Tx, v storage.ExportVisitor) error {
	rows, err := tx.Query(ctx, `SELECT q.id, q.entry, q.own || coalesce(b.content, ''::bytea),
			coalesce(q.shared_body_id, 0), length(q.own)
		FROM queue q LEFT JOIN bodies b ON b.id = q.shared_body_id
		WHERE q.entry IS NOT NULL ORDER BY q.id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id uint64
		var entry, body []byte
		var shared storage.SharedPart
		if err := rows.Scan(&id, &entry, &body, &shared.ID, &shared.Offset); err != nil {
			return err
		}
		e, err := decodeEntry(id, entry)
		if err != nil {
			return err
		}
		e.Body = string(body)
		if err := v.VisitQueueEntry(&storage.ExportedQueueEntry{Entry: e, Shared: shared}); err != nil {
			return err
		}
	}
	return rows.Err()
}

func exportQueueState(ctx context.Context, tx pgx.Tx, v storage.ExportVisitor) error {
	st := &storage.ExportedQueueState{}
	if err := tx.QueryRow(ctx, "SELECT coalesce((SELECT state FROM relay_state), '')").Scan(&st.RelayState); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT day, username, count FROM daily_counters WHERE count > 0
		ORDER BY day, username COLLATE "C"`)
	if err != nil {
		return err
	}
	if st.Days, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.DayCount, error) {
		var d storage.DayCount
		err := r.Scan(&d.Day, &d.User, &d.Count)
		return d, err
	}); err != nil {
		return err
	}
	rows, err = tx.Query(ctx, `SELECT day, username FROM daily_alerts ORDER BY day, username COLLATE "C"`)
	if err != nil {
		return err
	}
	if st.Alerts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.DayMark, error) {
		var d storage.DayMark
		err := r.Scan(&d.Day, &d.User)
		return d, err
	}); err != nil {
		return err
	}
	return v.VisitQueueState(st)
}
