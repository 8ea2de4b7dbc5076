package storage

// Users and passwords, as rules over the records (records.go): the
// password policy and its bcrypt hashes, the same cost for an unknown
// user as for a wrong password, and the four mailboxes every user has.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/crypto/bcrypt"
)

// maxPasswordLen is bcrypt's limit: it ignores bytes past 72, so a longer
// password is refused rather than silently truncated.
const maxPasswordLen = 72

// UserRecord is a user as a backend stores it: the User and its password's
// bcrypt hash.
type UserRecord struct {
	User
	PasswordHash []byte `json:"password_hash"`
}

// defaultMailboxes are created with every user, subscribed, with their
// RFC 6154 special-use attributes.
var defaultMailboxes = []struct {
	name string
	attr imap.MailboxAttr
}{
	{Inbox, ""},
	{Sent, imap.MailboxAttrSent},
	{Drafts, imap.MailboxAttrDrafts},
	{Trash, imap.MailboxAttrTrash},
}

// passwords hashes and checks passwords at one bcrypt cost.
type passwords struct {
	cost int
	// dummy is compared against for unknown users, so that Authenticate
	// takes as long for them as for a wrong password.
	dummy []byte
}

func newPasswords(cost int) (*passwords, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("storage: password cost %d: %w", cost, ErrInvalid)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("pochta dummy password"), cost)
	if err != nil {
		return nil, fmt.Errorf("storage: dummy hash: %w", err)
	}
	return &passwords{cost: cost, dummy: dummy}, nil
}

func checkPassword(password string) error {
	if password == "" {
		return fmt.Errorf("empty password: %w", ErrInvalid)
	}
	if len(password) > maxPasswordLen {
		return fmt.Errorf("password longer than %d bytes: %w", maxPasswordLen, ErrInvalid)
	}
	return nil
}

func (p *passwords) hash(password string) ([]byte, error) {
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), p.cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// CreateUser implements Store: the user with INBOX, Sent, Drafts and Trash.
func (r Rules) CreateUser(ctx context.Context, address, password string, admin bool) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("storage: create user: %w", err)
	}
	hash, err := r.passwords.hash(password)
	if err != nil {
		return fmt.Errorf("storage: create user %s: %w", addr, err)
	}
	now := time.Now().UTC()
	err = r.Records.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		rec := &UserRecord{User: User{Address: addr, Admin: admin, Created: now}, PasswordHash: hash}
		if err := tx.CreateUserRecord(rec); err != nil {
			return err
		}
		for _, m := range defaultMailboxes {
			if _, err := tx.CreateMailbox(addr, m.name, m.attr, true, now); err != nil {
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

// updateUser changes a user's record in one transaction.
func (r Rules) updateUser(ctx context.Context, address string, change func(*UserRecord)) error {
	addr := strings.ToLower(address)
	return r.Records.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		rec, err := tx.UserRecord(addr)
		if err != nil {
			return err
		}
		change(rec)
		return tx.PutUserRecord(rec)
	})
}

// SetPassword implements Store: the user's password hash is replaced.
func (r Rules) SetPassword(ctx context.Context, address, password string) error {
	hash, err := r.passwords.hash(password)
	if err != nil {
		return fmt.Errorf("storage: set password for %s: %w", strings.ToLower(address), err)
	}
	addr := strings.ToLower(address)
	err = r.Records.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		rec, err := tx.UserRecord(addr)
		if err != nil {
			return err
		}
		rec.PasswordHash = hash
		ev.AddUntagged(Event{Kind: EventAccount, User: addr})
		return tx.PutUserRecord(rec)
	})
	if err != nil {
		return fmt.Errorf("storage: set password: %w", err)
	}
	return nil
}

// SetSettings implements Store.
func (r Rules) SetSettings(ctx context.Context, address string, st Settings) error {
	if st.PollInterval < 0 {
		return fmt.Errorf("storage: settings: negative poll interval: %w", ErrInvalid)
	}
	if err := r.updateUser(ctx, address, func(rec *UserRecord) { rec.Settings = st }); err != nil {
		return fmt.Errorf("storage: settings: %w", err)
	}
	return nil
}

func (r Rules) userRecord(ctx context.Context, address string) (*UserRecord, error) {
	var rec *UserRecord
	err := r.Records.ViewRecords(ctx, func(tx RecordTx) error {
		var err error
		rec, err = tx.UserRecord(strings.ToLower(address))
		return err
	})
	return rec, err
}

// User implements Store.
func (r Rules) User(ctx context.Context, address string) (*User, error) {
	rec, err := r.userRecord(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &rec.User, nil
}

// Authenticate implements Store. An unknown user costs one bcrypt
// comparison too (against a dummy hash), so response times do not tell
// which addresses exist.
func (r Rules) Authenticate(ctx context.Context, address, password string) (*User, error) {
	hash := r.passwords.dummy
	rec, err := r.userRecord(ctx, address)
	switch {
	case err == nil:
		hash = rec.PasswordHash
	case errors.Is(err, ErrNotFound):
		rec = nil
	default:
		return nil, fmt.Errorf("storage: authenticate: %w", err)
	}
	cmp := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if rec == nil || cmp != nil || checkPassword(password) != nil {
		return nil, fmt.Errorf("storage: %s: %w", strings.ToLower(address), ErrAuthFailed)
	}
	return &rec.User, nil
}
