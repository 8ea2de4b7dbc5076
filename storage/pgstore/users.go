package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
)

// lockUser takes the user's row lock for the rest of tx (the writers of
// one user's mailbox list are serialised by it); ErrNotFound if no such
// user.
func lockUser(ctx context.Context, tx pgx.Tx, addr string) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM users WHERE address = $1 FOR UPDATE", addr).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("user %s: %w", addr, storage.ErrNotFound)
	}
	return err
}

func updateUser(ctx context.Context, tx pgx.Tx, addr, sql string, arg any) error {
	tag, err := tx.Exec(ctx, sql, addr, arg)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("user %s: %w", addr, storage.ErrNotFound)
	}
	return nil
}

// DeleteUser implements storage.Backend: the user's row goes, and with it
// (ON DELETE CASCADE) every mailbox, message and subscription; each
// mailbox gets an EventMailboxes so open sessions end.
func (s *pgStore) DeleteUser(ctx context.Context, address string) error {
	addr := strings.ToLower(address)
	err := s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		if err := lockUser(ctx, tx, addr); err != nil {
			return err
		}
		if err := storage.UserDeleting(pgTx{ctx: ctx, tx: tx}, addr, ev); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM unread WHERE username = $1", addr); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT id FROM mailboxes WHERE username = $1 ORDER BY id", addr)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM users WHERE address = $1", addr); err != nil {
			return err
		}
		for _, id := range ids {
			ev.Add(storage.Event{Kind: storage.EventMailboxes, User: addr, MailboxID: uint64(id)})
		}
		ev.AddUntagged(storage.Event{Kind: storage.EventAccount, User: addr, Deleted: true})
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: delete user: %w", err)
	}
	return nil
}

type userRow struct {
	storage.User
	hash []byte
}

const userColumns = "address, admin, created_at, settings, password_hash"

func scanUser(row pgx.Row) (*userRow, error) {
	var u userRow
	var settings []byte
	if err := row.Scan(&u.Address, &u.Admin, &u.Created, &settings, &u.hash); err != nil {
		return nil, err
	}
	u.Created = u.Created.UTC()
	if err := json.Unmarshal(settings, &u.Settings); err != nil {
		return nil, fmt.Errorf("user %s: settings: %w", u.Address, err)
	}
	return &u, nil
}

// Users implements storage.Backend: every user, ordered by address (byte
// order, as bbolt keeps them).
func (s *pgStore) Users(ctx context.Context) ([]storage.User, error) {
	var users []storage.User
	err := s.view(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+userColumns+` FROM users ORDER BY address COLLATE "C"`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return err
			}
			users = append(users, u.User)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: users: %w", err)
	}
	return users, nil
}
