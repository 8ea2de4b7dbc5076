package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/storage"
)

// maxPasswordLen is bcrypt's limit: it ignores bytes past 72, so a longer
// password is refused rather than silently truncated.
const maxPasswordLen = 72

func checkPassword(password string) error {
	if password == "" {
		return fmt.Errorf("empty password: %w", storage.ErrInvalid)
	}
	if len(password) > maxPasswordLen {
		return fmt.Errorf("password longer than %d bytes: %w", maxPasswordLen, storage.ErrInvalid)
	}
	return nil
}

func (s *pgStore) hashPassword(password string) ([]byte, error) {
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.opts.PasswordCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// defaultMailboxes are created with every user, subscribed, with their
// RFC 6154 special-use attributes.
var defaultMailboxes = []struct {
	name string
	attr imap.MailboxAttr
}{
	{storage.Inbox, ""},
	{storage.Sent, imap.MailboxAttrSent},
	{storage.Drafts, imap.MailboxAttrDrafts},
	{storage.Trash, imap.MailboxAttrTrash},
}

// CreateUser implements storage.Backend.
func (s *pgStore) CreateUser(ctx context.Context, address, password string, admin bool) error {
	addr, err := storage.NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("storage: create user: %w", err)
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return fmt.Errorf("storage: create user %s: %w", addr, err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		tag, err := tx.Exec(ctx, `INSERT INTO users (address, admin, password_hash, created_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING`, addr, admin, hash, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("user %s: %w", addr, storage.ErrExists)
		}
		for _, m := range defaultMailboxes {
			if _, err := createMailbox(ctx, tx, addr, m.name, m.attr, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: create user: %w", err)
	}
	return nil
}

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

// SetPassword implements storage.Backend.
func (s *pgStore) SetPassword(ctx context.Context, address, password string) error {
	addr := strings.ToLower(address)
	hash, err := s.hashPassword(password)
	if err != nil {
		return fmt.Errorf("storage: set password for %s: %w", addr, err)
	}
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		return updateUser(ctx, tx, addr, "UPDATE users SET password_hash = $2 WHERE address = $1", hash)
	})
	if err != nil {
		return fmt.Errorf("storage: set password: %w", err)
	}
	return nil
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

func (s *pgStore) userRow(ctx context.Context, address string) (*userRow, error) {
	addr := strings.ToLower(address)
	var u *userRow
	err := s.view(ctx, func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE address = $1", addr))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %s: %w", addr, storage.ErrNotFound)
		}
		return err
	})
	return u, err
}

// User implements storage.Backend.
func (s *pgStore) User(ctx context.Context, address string) (*storage.User, error) {
	u, err := s.userRow(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &u.User, nil
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

// Authenticate implements storage.Backend. An unknown user costs one
// bcrypt comparison too (against a dummy hash), so response times do not
// tell which addresses exist.
func (s *pgStore) Authenticate(ctx context.Context, address, password string) (*storage.User, error) {
	hash := s.dummyHash
	u, err := s.userRow(ctx, address)
	switch {
	case err == nil:
		hash = u.hash
	case errors.Is(err, storage.ErrNotFound):
		u = nil
	default:
		return nil, fmt.Errorf("storage: authenticate: %w", err)
	}
	cmp := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if u == nil || cmp != nil || checkPassword(password) != nil {
		return nil, fmt.Errorf("storage: %s: %w", strings.ToLower(address), storage.ErrAuthFailed)
	}
	return &u.User, nil
}

// SetSettings implements storage.Backend.
func (s *pgStore) SetSettings(ctx context.Context, address string, st storage.Settings) error {
	if st.PollInterval < 0 {
		return fmt.Errorf("storage: settings: negative poll interval: %w", storage.ErrInvalid)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("storage: settings: %w", err)
	}
	addr := strings.ToLower(address)
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		return updateUser(ctx, tx, addr, "UPDATE users SET settings = $2::jsonb WHERE address = $1", string(b))
	})
	if err != nil {
		return fmt.Errorf("storage: settings: %w", err)
	}
	return nil
}
