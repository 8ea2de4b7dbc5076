package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"
)

// maxPasswordLen is bcrypt's limit: it ignores bytes past 72, so a longer
// password is refused rather than silently truncated.
const maxPasswordLen = 72

// userRecord is what "users"/<address>/"info" holds.
type userRecord struct {
	storage.User
	PasswordHash []byte `json:"password_hash"`
}

func checkPassword(password string) error {
	if password == "" {
		return fmt.Errorf("empty password: %w", storage.ErrInvalid)
	}
	if len(password) > maxPasswordLen {
		return fmt.Errorf("password longer than %d bytes: %w", maxPasswordLen, storage.ErrInvalid)
	}
	return nil
}

func (s *boltStore) hashPassword(password string) ([]byte, error) {
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.passwordCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// userTx is one user's buckets inside a transaction.
type userTx struct {
	tx     *bolt.Tx
	addr   string
	b      *bolt.Bucket
	names  *bolt.Bucket
	graves *bolt.Bucket
	boxes  *bolt.Bucket
}

// openUser finds a user's buckets. Addresses that are not valid cannot
// exist, so they are simply not found.
func openUser(tx *bolt.Tx, address string) (*userTx, error) {
	addr := strings.ToLower(address)
	b := tx.Bucket(bucketUsers).Bucket([]byte(addr))
	if b == nil {
		return nil, fmt.Errorf("user %s: %w", addr, storage.ErrNotFound)
	}
	u := &userTx{
		tx:     tx,
		addr:   addr,
		b:      b,
		names:  b.Bucket(bucketNames),
		graves: b.Bucket(bucketGraves),
		boxes:  b.Bucket(bucketBoxes),
	}
	if u.names == nil || u.graves == nil || u.boxes == nil {
		return nil, fmt.Errorf("user %s: %w", addr, errCorrupt)
	}
	return u, nil
}

func (u *userTx) record() (*userRecord, error) {
	var rec userRecord
	if err := json.Unmarshal(u.b.Get(keyInfo), &rec); err != nil {
		return nil, fmt.Errorf("user %s: %w", u.addr, err)
	}
	return &rec, nil
}

func (u *userTx) putRecord(rec *userRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("user %s: %w", u.addr, err)
	}
	return u.b.Put(keyInfo, b)
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

// CreateUser creates a user with INBOX, Sent, Drafts and Trash.
func (s *boltStore) CreateUser(ctx context.Context, address, password string, admin bool) error {
	addr, err := storage.NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("storage: create user: %w", err)
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return fmt.Errorf("storage: create user %s: %w", addr, err)
	}
	now := time.Now().UTC()
	_, err = write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		users := tx.Bucket(bucketUsers)
		if users.Bucket([]byte(addr)) != nil {
			return struct{}{}, fmt.Errorf("user %s: %w", addr, storage.ErrExists)
		}
		b, err := users.CreateBucket([]byte(addr))
		if err != nil {
			return struct{}{}, err
		}
		for _, name := range [][]byte{bucketNames, bucketGraves, bucketBoxes} {
			if _, err := b.CreateBucket(name); err != nil {
				return struct{}{}, err
			}
		}
		u, err := openUser(tx, addr)
		if err != nil {
			return struct{}{}, err
		}
		rec := &userRecord{
			User:         storage.User{Address: addr, Admin: admin, Created: now},
			PasswordHash: hash,
		}
		if err := u.putRecord(rec); err != nil {
			return struct{}{}, err
		}
		for _, m := range defaultMailboxes {
			if _, err := u.createMailbox(m.name, m.attr, true, now); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("storage: create user: %w", err)
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (s *boltStore) SetPassword(ctx context.Context, address, password string) error {
	addr := strings.ToLower(address)
	hash, err := s.hashPassword(password)
	if err != nil {
		return fmt.Errorf("storage: set password for %s: %w", addr, err)
	}
	_, err = write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, addr)
		if err != nil {
			return struct{}{}, err
		}
		rec, err := u.record()
		if err != nil {
			return struct{}{}, err
		}
		rec.PasswordHash = hash
		return struct{}{}, u.putRecord(rec)
	})
	if err != nil {
		return fmt.Errorf("storage: set password: %w", err)
	}
	return nil
}

// DeleteUser removes the user's bucket, and with it every mailbox and
// message. Each mailbox gets an EventMailboxes so open sessions end.
func (s *boltStore) DeleteUser(ctx context.Context, address string) error {
	addr := strings.ToLower(address)
	_, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, addr)
		if err != nil {
			return struct{}{}, err
		}
		if err := u.untrackUser(ev); err != nil {
			return struct{}{}, err
		}
		if err := u.releaseBodies(); err != nil {
			return struct{}{}, err
		}
		c := u.boxes.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil && len(k) == 8 {
				ev.Add(storage.Event{Kind: storage.EventMailboxes, User: addr, MailboxID: beUint64(k)})
			}
		}
		return struct{}{}, tx.Bucket(bucketUsers).DeleteBucket([]byte(addr))
	})
	if err != nil {
		return fmt.Errorf("storage: delete user: %w", err)
	}
	return nil
}

func (s *boltStore) userRecord(ctx context.Context, address string) (*userRecord, error) {
	var rec *userRecord
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := openUser(tx, address)
		if err != nil {
			return err
		}
		rec, err = u.record()
		return err
	})
	return rec, err
}

// User returns one user.
func (s *boltStore) User(ctx context.Context, address string) (*storage.User, error) {
	rec, err := s.userRecord(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &rec.User, nil
}

// Users returns every user ordered by address (the bucket's key order).
func (s *boltStore) Users(ctx context.Context) ([]storage.User, error) {
	var users []storage.User
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUsers).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil {
				continue
			}
			u, err := openUser(tx, string(k))
			if err != nil {
				return err
			}
			rec, err := u.record()
			if err != nil {
				return err
			}
			users = append(users, rec.User)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: users: %w", err)
	}
	return users, nil
}

// Authenticate checks a password. An unknown user costs one bcrypt
// comparison too (against a dummy hash), so response times do not tell
// which addresses exist.
func (s *boltStore) Authenticate(ctx context.Context, address, password string) (*storage.User, error) {
	hash := s.dummyHash
	rec, err := s.userRecord(ctx, address)
	switch {
	case err == nil:
		hash = rec.PasswordHash
	case errors.Is(err, storage.ErrNotFound):
		rec = nil
	default:
		return nil, fmt.Errorf("storage: authenticate: %w", err)
	}
	cmp := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if rec == nil || cmp != nil || checkPassword(password) != nil {
		return nil, fmt.Errorf("storage: %s: %w", strings.ToLower(address), storage.ErrAuthFailed)
	}
	return &rec.User, nil
}

// SetSettings stores a user's settings.
func (s *boltStore) SetSettings(ctx context.Context, address string, st storage.Settings) error {
	if st.PollInterval < 0 {
		return fmt.Errorf("storage: settings: negative poll interval: %w", storage.ErrInvalid)
	}
	addr := strings.ToLower(address)
	_, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, addr)
		if err != nil {
			return struct{}{}, err
		}
		rec, err := u.record()
		if err != nil {
			return struct{}{}, err
		}
		rec.Settings = st
		return struct{}{}, u.putRecord(rec)
	})
	if err != nil {
		return fmt.Errorf("storage: settings: %w", err)
	}
	return nil
}
