package boltstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// Quota (RFC 9208's STORAGE resource): a user's usage is the sum of the
// sizes of the messages in all their mailboxes, read from the mailbox
// records (each keeps its Size up to date on every write), so it costs one
// record per mailbox and no message is read. Options.Quota bounds it for
// Append, AppendMany and Copy, inside their transaction, so concurrent
// writers cannot pass it together. Move within one user changes nothing.
// Deliver is not refused here: smtpd checks a recipient's usage at RCPT
// time (with the size the client declared), so a full mailbox fails only
// that recipient; a message under way may take a mailbox over its quota
// once, after which the checks refuse.

// usage sums the sizes of the user's mailboxes.
func (u *userTx) usage() (int64, error) {
	var total int64
	c := u.boxes.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		b := u.boxes.Bucket(k)
		if b == nil {
			continue
		}
		rec, err := decodeMailbox(b.Get(keyInfo))
		if err != nil {
			return 0, fmt.Errorf("mailbox %x of %s: %w", k, u.addr, err)
		}
		total += rec.Size
	}
	return total, nil
}

// checkQuota fails with ErrOverQuota when adding bytes to the user's
// usage would pass the store's quota.
func (s *boltStore) checkQuota(u *userTx, bytes int64) error {
	if s.quota <= 0 || bytes <= 0 {
		return nil
	}
	used, err := u.usage()
	if err != nil {
		return err
	}
	if used+bytes > s.quota {
		return fmt.Errorf("%s uses %d of %d bytes, %d more do not fit: %w", u.addr, used, s.quota, bytes, storage.ErrOverQuota)
	}
	return nil
}

// Usage returns the bytes the user's messages take, for GETQUOTA and
// smtpd's check at RCPT.
func (s *boltStore) Usage(ctx context.Context, user string) (int64, error) {
	var used int64
	err := s.db.View(func(tx *bolt.Tx) error {
		u, err := openUser(tx, strings.ToLower(user))
		if err != nil {
			return err
		}
		used, err = u.usage()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storage: usage: %w", err)
	}
	return used, nil
}

// Quota returns Options.Quota: the bytes each user may keep, 0 for no
// limit.
func (s *boltStore) Quota() int64 { return s.quota }

// copiedBytes sums the sizes of the messages of uids that exist in mb; an
// unreadable record counts nothing here and fails the copy itself.
func copiedBytes(mb msgBuckets, uids []imap.UID) int64 {
	var total int64
	for _, uid := range uids {
		mv := mb.meta.Get(be32(uint32(uid)))
		if mv == nil {
			continue
		}
		if m, err := decodeMeta(mv); err == nil {
			total += m.size
		}
	}
	return total
}
