package boltstore

// The bbolt records of the unread index (expiry.go has the rules):
//
//	"unread"/<date><box><uid><address>  one entry per INBOX message without
//	                                    \Seen; <date> is UnreadDate (big-endian),
//	                                    so a cursor meets the oldest first

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

var bucketUnread = []byte("unread")

func unreadKey(date time.Time, box uint64, uid imap.UID, user string) []byte {
	return unreadEntryKey(storage.UnreadEntry{Date: storage.UnreadDate(date), Mailbox: box, UID: uid, User: user})
}

func unreadEntryKey(e storage.UnreadEntry) []byte {
	k := make([]byte, 20, 20+len(e.User))
	binary.BigEndian.PutUint64(k, e.Date)
	binary.BigEndian.PutUint64(k[8:], e.Mailbox)
	binary.BigEndian.PutUint32(k[16:], uint32(e.UID))
	return append(k, e.User...)
}

// PutUnread implements RecordTx.
func (t boltTx) PutUnread(e storage.UnreadEntry) error {
	b, err := t.tx.CreateBucketIfNotExists(bucketUnread)
	if err != nil {
		return err
	}
	return b.Put(unreadEntryKey(e), present)
}

// DeleteUnread implements RecordTx.
func (t boltTx) DeleteUnread(e storage.UnreadEntry) error {
	b := t.tx.Bucket(bucketUnread)
	if b == nil {
		return nil
	}
	return b.Delete(unreadEntryKey(e))
}

// UnreadBefore implements RecordTx.
func (t boltTx) UnreadBefore(limit uint64, max int) ([]storage.UnreadEntry, error) {
	b := t.tx.Bucket(bucketUnread)
	if b == nil {
		return nil, nil
	}
	var es []storage.UnreadEntry
	var bad [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(es) < max; k, _ = c.Next() {
		if len(k) >= 8 && binary.BigEndian.Uint64(k) >= limit {
			break
		}
		if len(k) <= 20 {
			// A key that names no message: a write drops it, as the
			// sweep drops a stale entry; a read skips it.
			bad = append(bad, clone(k))
			continue
		}
		es = append(es, storage.UnreadEntry{
			Date:    binary.BigEndian.Uint64(k),
			Mailbox: binary.BigEndian.Uint64(k[8:]),
			UID:     imap.UID(binary.BigEndian.Uint32(k[16:])),
			User:    string(k[20:]),
		})
	}
	if t.tx.Writable() {
		for _, k := range bad {
			if err := b.Delete(k); err != nil {
				return nil, err
			}
		}
	}
	return es, nil
}

// Name implements MailboxTx.
func (x *boxTx) Name() string { return x.rec.Name }

// MessageInfo implements MailboxTx.
func (x *boxTx) MessageInfo(uid imap.UID) (storage.MessageInfo, bool, error) {
	mb, err := x.buckets()
	if err != nil {
		return storage.MessageInfo{}, false, err
	}
	v := mb.meta.Get(be32(uint32(uid)))
	if v == nil {
		return storage.MessageInfo{}, false, nil
	}
	m, err := decodeMeta(v)
	if err != nil {
		return storage.MessageInfo{}, false, nil
	}
	return storage.MessageInfo{InternalDate: m.internalDate, Seen: m.flags.sys&flagSeen != 0, Size: m.size, ModSeq: m.modseq}, true, nil
}

// Remove implements MailboxTx.
func (x *boxTx) Remove(uid imap.UID, ev *storage.Events) (bool, error) {
	mb, err := x.buckets()
	if err != nil {
		return false, err
	}
	v := mb.meta.Get(be32(uint32(uid)))
	if v == nil {
		return false, nil
	}
	m, err := decodeMeta(v)
	if err != nil {
		return false, fmt.Errorf("message %d: %w", uid, err)
	}
	return true, x.remove(mb, uid, m, ev)
}

// migrateIndexes creates the read-tracking buckets and builds the unread
// index of a database written before they existed. It runs at Open.
func migrateIndexes(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketTracking); err != nil {
		return err
	}
	if tx.Bucket(bucketUnread) != nil {
		return nil
	}
	b, err := tx.CreateBucket(bucketUnread)
	if err != nil {
		return err
	}
	c := tx.Bucket(bucketUsers).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		u, err := openUser(tx, string(k))
		if err != nil {
			return fmt.Errorf("unread index: %w", err)
		}
		x, err := u.boxByName(storage.Inbox)
		if err != nil {
			continue
		}
		mb, err := x.buckets()
		if err != nil {
			return fmt.Errorf("unread index: %w", err)
		}
		mc := mb.meta.Cursor()
		for uk, mv := mc.First(); uk != nil; uk, mv = mc.Next() {
			m, err := decodeMeta(mv)
			if err != nil || len(uk) != 4 || m.flags.sys&flagSeen != 0 {
				continue
			}
			if err := b.Put(unreadKey(m.internalDate, x.id, imap.UID(binary.BigEndian.Uint32(uk)), u.addr), present); err != nil {
				return err
			}
		}
	}
	return nil
}
