package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
)

// createMailbox inserts a mailbox of addr (whose row the caller has
// locked or just inserted). Its UIDVALIDITY is max(last + 1, now) across
// every node (store_meta's row lock serialises them); its UIDNEXT is what
// a mailbox deleted under the same name reached (mailbox_graves), so UIDs
// are never reused.
func createMailbox(ctx context.Context, tx pgx.Tx, addr, name string, attr imap.MailboxAttr, subscribed bool) (uint64, error) {
	var id uint64
	err := tx.QueryRow(ctx, `WITH uv AS (
			UPDATE store_meta SET value = CASE
				WHEN extract(epoch FROM now())::bigint > value + 1 AND extract(epoch FROM now())::bigint <= 4294967295
				THEN extract(epoch FROM now())::bigint
				WHEN value + 1 > 4294967295 THEN 1
				ELSE value + 1 END
			WHERE key = 'uidvalidity' RETURNING value)
		INSERT INTO mailboxes (username, name, special_use, uidvalidity, uidnext)
		SELECT $1, $2, $3, uv.value,
			coalesce((SELECT uidnext FROM mailbox_graves WHERE username = $1 AND name = $2), 1)
		FROM uv
		ON CONFLICT (username, name) DO NOTHING
		RETURNING id`, addr, name, string(attr)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("mailbox %q of %s: %w", name, addr, storage.ErrExists)
	}
	if err != nil {
		return 0, err
	}
	if subscribed {
		if _, err := setSubscription(ctx, tx, addr, name, true); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// setSubscription adds name to addr's subscription list or removes it and
// reports whether the list changed.
func setSubscription(ctx context.Context, tx pgx.Tx, addr, name string, on bool) (bool, error) {
	sql := "INSERT INTO subscriptions (username, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
	if !on {
		sql = "DELETE FROM subscriptions WHERE username = $1 AND name = $2"
	}
	tag, err := tx.Exec(ctx, sql, addr, name)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() > 0, nil
}

// bury remembers the UIDNEXT a name reached, for a mailbox created again
// under it.
func bury(ctx context.Context, tx pgx.Tx, addr, name string, uidNext uint64) error {
	_, err := tx.Exec(ctx, `INSERT INTO mailbox_graves (username, name, uidnext) VALUES ($1, $2, $3)
		ON CONFLICT (username, name) DO UPDATE SET uidnext = greatest(mailbox_graves.uidnext, excluded.uidnext)`,
		addr, name, uidNext)
	return err
}

func mailboxExists(ctx context.Context, tx pgx.Tx, addr, name string) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE username = $1 AND name = $2)", addr, name).Scan(&ok)
	return ok, err
}

// createParents creates the missing parents of name, each with its
// EventMailboxes.
func createParents(ctx context.Context, tx pgx.Tx, addr, name string, ev *storage.Events) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		ok, err := mailboxExists(ctx, tx, addr, parent)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		id, err := createMailbox(ctx, tx, addr, parent, "", false)
		if err != nil {
			return err
		}
		ev.Add(storage.Event{Kind: storage.EventMailboxes, User: addr, MailboxID: id, ModSeq: 1})
	}
	return nil
}

const mailboxColumns = `m.id, m.name, m.special_use, m.uidvalidity, m.uidnext,
	EXISTS (SELECT 1 FROM subscriptions s WHERE s.username = m.username AND s.name = m.name),
	m.messages, m.unseen, m.size, m.highestmodseq`

func scanMailbox(row pgx.Row) (*storage.MailboxStatus, error) {
	var st storage.MailboxStatus
	var attr string
	var uv, uidNext, messages, unseen int64
	if err := row.Scan(&st.ID, &st.Name, &attr, &uv, &uidNext, &st.Subscribed,
		&messages, &unseen, &st.Size, &st.HighestModSeq); err != nil {
		return nil, err
	}
	st.SpecialUse = imap.MailboxAttr(attr)
	st.UIDValidity = uint32(uv)
	st.UIDNext = imap.UID(uidNext)
	st.Messages = uint32(messages)
	st.Unseen = uint32(unseen)
	return &st, nil
}

// userExists reports ErrNotFound for an unknown user.
func userExists(ctx context.Context, tx pgx.Tx, addr string) error {
	var ok bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM users WHERE address = $1)", addr).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("user %s: %w", addr, storage.ErrNotFound)
	}
	return nil
}

// Mailboxes implements storage.Backend: ordered by name (byte order).
func (s *pgStore) Mailboxes(ctx context.Context, user string) ([]storage.Mailbox, error) {
	addr := strings.ToLower(user)
	var list []storage.Mailbox
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := userExists(ctx, tx, addr); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+mailboxColumns+` FROM mailboxes m WHERE m.username = $1 ORDER BY m.name COLLATE "C"`, addr)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			st, err := scanMailbox(rows)
			if err != nil {
				return err
			}
			list = append(list, st.Mailbox)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: mailboxes: %w", err)
	}
	return list, nil
}

func mailboxByName(ctx context.Context, tx pgx.Tx, addr, name string, lock bool) (*storage.MailboxStatus, error) {
	sql := "SELECT " + mailboxColumns + " FROM mailboxes m WHERE m.username = $1 AND m.name = $2"
	if lock {
		sql += " FOR UPDATE"
	}
	st, err := scanMailbox(tx.QueryRow(ctx, sql, addr, name))
	if errors.Is(err, pgx.ErrNoRows) {
		if err := userExists(ctx, tx, addr); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("mailbox %q of %s: %w", name, addr, storage.ErrNotFound)
	}
	return st, err
}

func (s *pgStore) mailboxStatus(ctx context.Context, user, name string) (*storage.MailboxStatus, error) {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	var st *storage.MailboxStatus
	err = s.view(ctx, func(tx pgx.Tx) error {
		st, err = mailboxByName(ctx, tx, strings.ToLower(user), n, false)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return st, nil
}

// Mailbox implements storage.Backend.
func (s *pgStore) Mailbox(ctx context.Context, user, name string) (*storage.Mailbox, error) {
	st, err := s.mailboxStatus(ctx, user, name)
	if err != nil {
		return nil, err
	}
	return &st.Mailbox, nil
}

// MailboxStatus implements storage.Backend: one row, whose counters every
// write keeps.
func (s *pgStore) MailboxStatus(ctx context.Context, user, name string) (*storage.MailboxStatus, error) {
	return s.mailboxStatus(ctx, user, name)
}

// CreateMailbox implements storage.Backend.
func (s *pgStore) CreateMailbox(ctx context.Context, user, name string) error {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return fmt.Errorf("storage: create mailbox: %w", err)
	}
	addr := strings.ToLower(user)
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		if err := lockUser(ctx, tx, addr); err != nil {
			return err
		}
		if ok, err := mailboxExists(ctx, tx, addr, n); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("mailbox %q of %s: %w", n, addr, storage.ErrExists)
		}
		if err := createParents(ctx, tx, addr, n, ev); err != nil {
			return err
		}
		id, err := createMailbox(ctx, tx, addr, n, "", false)
		if err != nil {
			return err
		}
		ev.Add(storage.Event{Kind: storage.EventMailboxes, User: addr, MailboxID: id, ModSeq: 1})
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: create mailbox: %w", err)
	}
	return nil
}

// DeleteMailbox implements storage.Backend: the mailbox's row goes with
// its messages (ON DELETE CASCADE; the shared bodies' reference counts
// follow by trigger), its children stay, and its name remembers the
// UIDNEXT it reached.
func (s *pgStore) DeleteMailbox(ctx context.Context, user, name string) error {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return fmt.Errorf("storage: delete mailbox: %w", err)
	}
	if storage.IsProtected(n) {
		return fmt.Errorf("storage: delete mailbox %q: %w", n, storage.ErrProtected)
	}
	addr := strings.ToLower(user)
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		if err := lockUser(ctx, tx, addr); err != nil {
			return err
		}
		st, err := mailboxByName(ctx, tx, addr, n, true)
		if err != nil {
			return err
		}
		if err := bury(ctx, tx, addr, n, uint64(st.UIDNext)); err != nil {
			return err
		}
		t := pgTx{ctx: ctx, tx: tx}
		x, err := t.openMailbox(addr, st.ID)
		if err != nil {
			return err
		}
		if err := storage.MailboxDeleting(t, x, ev); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM unread WHERE username = $1 AND mailbox_id = $2", addr, int64(st.ID)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM mailboxes WHERE id = $1", st.ID); err != nil {
			return err
		}
		ev.Add(storage.Event{Kind: storage.EventMailboxes, User: addr, MailboxID: st.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: delete mailbox: %w", err)
	}
	return nil
}

// RenameMailbox implements storage.Backend: the mailbox and its children
// keep their IDs, UIDVALIDITY and messages; each takes its next modseq;
// subscriptions follow the names; missing parents of the new name are
// created. All or nothing: a child that would collide refuses the whole
// rename.
func (s *pgStore) RenameMailbox(ctx context.Context, user, oldName, newName string) error {
	from, to, err := storage.RenameNames(oldName, newName)
	if err != nil {
		return fmt.Errorf("storage: rename mailbox: %w", err)
	}
	addr := strings.ToLower(user)
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		if err := lockUser(ctx, tx, addr); err != nil {
			return err
		}
		type move struct {
			from, to string
			id       uint64
			uidNext  uint64
			modseq   uint64
		}
		rows, err := tx.Query(ctx, `SELECT name, id, uidnext FROM mailboxes
			WHERE username = $1 AND (name = $2 OR left(name, length($2) + 1) = $2 || '/')
			ORDER BY name COLLATE "C" FOR UPDATE`, addr, from)
		if err != nil {
			return err
		}
		var moves []move
		for rows.Next() {
			var m move
			if err := rows.Scan(&m.from, &m.id, &m.uidNext); err != nil {
				rows.Close()
				return err
			}
			m.to = to + m.from[len(from):]
			moves = append(moves, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(moves) == 0 || moves[0].from != from {
			return fmt.Errorf("mailbox %q of %s: %w", from, addr, storage.ErrNotFound)
		}
		for _, m := range moves {
			if ok, err := mailboxExists(ctx, tx, addr, m.to); err != nil {
				return err
			} else if ok {
				return fmt.Errorf("mailbox %q of %s: %w", m.to, addr, storage.ErrExists)
			}
		}
		for i, m := range moves {
			if err := bury(ctx, tx, addr, m.from, m.uidNext); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `UPDATE mailboxes SET name = $2, highestmodseq = highestmodseq + 1
				WHERE id = $1 RETURNING highestmodseq`, m.id, m.to).Scan(&moves[i].modseq); err != nil {
				return err
			}
			if moved, err := setSubscription(ctx, tx, addr, m.from, false); err != nil {
				return err
			} else if moved {
				if _, err := setSubscription(ctx, tx, addr, m.to, true); err != nil {
					return err
				}
			}
		}
		if err := createParents(ctx, tx, addr, to, ev); err != nil {
			return err
		}
		for _, m := range moves {
			ev.Add(storage.Event{Kind: storage.EventMailboxes, User: addr, MailboxID: m.id, ModSeq: m.modseq})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: rename mailbox: %w", err)
	}
	return nil
}

// SetSubscribed implements storage.Backend: subscriptions are kept by
// name. Subscribing needs an existing mailbox; unsubscribing takes any
// name on the list. A change of an existing mailbox's subscription takes
// the mailbox's next modseq.
func (s *pgStore) SetSubscribed(ctx context.Context, user, name string, subscribed bool) error {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return fmt.Errorf("storage: subscribe: %w", err)
	}
	addr := strings.ToLower(user)
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		if err := lockUser(ctx, tx, addr); err != nil {
			return err
		}
		st, err := mailboxByName(ctx, tx, addr, n, true)
		if errors.Is(err, storage.ErrNotFound) && !subscribed {
			changed, err := setSubscription(ctx, tx, addr, n, false)
			if err == nil && !changed {
				err = fmt.Errorf("mailbox %q of %s: %w", n, addr, storage.ErrNotFound)
			}
			return err
		}
		if err != nil {
			return err
		}
		changed, err := setSubscription(ctx, tx, addr, n, subscribed)
		if err != nil || !changed {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1", st.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: subscribe: %w", err)
	}
	return nil
}

// Subscriptions implements storage.Backend: the subscribed names in byte
// order, including those whose mailbox no longer exists.
func (s *pgStore) Subscriptions(ctx context.Context, user string) ([]string, error) {
	addr := strings.ToLower(user)
	var names []string
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := userExists(ctx, tx, addr); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name FROM subscriptions WHERE username = $1 ORDER BY name COLLATE "C"`, addr)
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: subscriptions: %w", err)
	}
	return names, nil
}
