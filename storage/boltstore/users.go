package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// userRecord is what "users"/<address>/"info" holds (JSON).
type userRecord = storage.UserRecord

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
		ev.AddUntagged(storage.Event{Kind: storage.EventAccount, User: addr, Deleted: true})
		return struct{}{}, tx.Bucket(bucketUsers).DeleteBucket([]byte(addr))
	})
	if err != nil {
		return fmt.Errorf("storage: delete user: %w", err)
	}
	return nil
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

// UserRecord implements RecordTx.
func (t boltTx) UserRecord(address string) (*storage.UserRecord, error) {
	u, err := t.user(address)
	if err != nil {
		return nil, err
	}
	return u.record()
}

// PutUserRecord implements RecordTx.
func (t boltTx) PutUserRecord(rec *storage.UserRecord) error {
	u, err := t.user(rec.Address)
	if err != nil {
		return err
	}
	return u.putRecord(rec)
}

// CreateUserRecord implements RecordTx: the user's buckets and record.
func (t boltTx) CreateUserRecord(rec *storage.UserRecord) error {
	users := t.tx.Bucket(bucketUsers)
	addr := rec.Address
	if users.Bucket([]byte(addr)) != nil {
		return fmt.Errorf("user %s: %w", addr, storage.ErrExists)
	}
	b, err := users.CreateBucket([]byte(addr))
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketNames, bucketGraves, bucketBoxes} {
		if _, err := b.CreateBucket(name); err != nil {
			return err
		}
	}
	u, err := openUser(t.tx, addr)
	if err != nil {
		return err
	}
	return u.putRecord(rec)
}

// CreateMailbox implements RecordTx.
func (t boltTx) CreateMailbox(user, name string, attr imap.MailboxAttr, subscribed bool, now time.Time) (uint64, error) {
	u, err := t.user(user)
	if err != nil {
		return 0, err
	}
	return u.createMailbox(name, attr, subscribed, now)
}
