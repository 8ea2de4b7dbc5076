package storage

// The unread lifetime ([message_server] message_lifetime): a message still
// without \Seen in an INBOX after that long is deleted. Read messages and
// every other mailbox (Sent, Drafts, …) are never touched.
//
//	"unread"/<date><box><uid><address>  one entry per INBOX message without
//	                                    \Seen; <date> is the internal date in
//	                                    Unix nanoseconds (big-endian, 0 before
//	                                    1970), so a cursor meets the oldest first
//
// The index is what keeps the sweep cheap: when nothing is due it costs one
// cursor step in a read transaction, whatever the number of messages. put,
// remove, StoreFlags and setSeen keep it exact. Entries left behind by a
// deleted user are dropped by the sweep when their date comes.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"
)

var bucketUnread = []byte("unread")

// expireBatch bounds the messages one sweep transaction deletes, so the
// writer is not held for long and other writes interleave.
const expireBatch = 256

// dateKey maps an internal date to the index's ordering.
func dateKey(t time.Time) uint64 {
	if t.Unix() < 0 {
		return 0
	}
	if t.Unix() >= math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func unreadKey(date time.Time, box uint64, uid imap.UID, user string) []byte {
	k := make([]byte, 20, 20+len(user))
	binary.BigEndian.PutUint64(k, dateKey(date))
	binary.BigEndian.PutUint64(k[8:], box)
	binary.BigEndian.PutUint32(k[16:], uint32(uid))
	return append(k, user...)
}

// indexUnread adds (unread true) or removes the index entry of an INBOX
// message; for other mailboxes it does nothing.
func (x *boxTx) indexUnread(uid imap.UID, date time.Time, unread bool) error {
	if x.rec.Name != Inbox {
		return nil
	}
	b := x.u.tx.Bucket(bucketUnread)
	if b == nil {
		var err error
		if b, err = x.u.tx.CreateBucket(bucketUnread); err != nil {
			return err
		}
	}
	key := unreadKey(date, x.id, uid, x.u.addr)
	if unread {
		return b.Put(key, present)
	}
	return b.Delete(key)
}

// ExpireUnread deletes the INBOX messages without \Seen dated before cutoff.
func (s *boltStore) ExpireUnread(ctx context.Context, cutoff time.Time) (int, error) {
	limit := dateKey(cutoff)
	total := 0
	for {
		due := false
		err := s.view(ctx, func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketUnread); b != nil {
				k, _ := b.Cursor().First()
				due = k != nil && (len(k) < 8 || binary.BigEndian.Uint64(k) < limit)
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("storage: expire unread: %w", err)
		}
		if !due {
			return total, nil
		}
		r, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (expireResult, error) {
			return expireDue(tx, limit, expireBatch, ev)
		})
		if err != nil {
			return total, fmt.Errorf("storage: expire unread: %w", err)
		}
		total += r.removed
		if r.examined < expireBatch {
			return total, nil
		}
	}
}

type expireResult struct {
	removed  int // messages deleted
	examined int // index entries looked at (deleted or dropped as stale)
}

// expireDue deletes up to max due messages in one transaction.
func expireDue(tx *bolt.Tx, limit uint64, max int, ev *eventList) (expireResult, error) {
	var res expireResult
	b := tx.Bucket(bucketUnread)
	if b == nil {
		return res, nil
	}
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < max; k, _ = c.Next() {
		if len(k) >= 8 && binary.BigEndian.Uint64(k) >= limit {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	users := make(map[string]*userTx)
	boxes := make(map[string]*boxTx)
	var live []*boxTx
	for _, k := range keys {
		res.examined++
		x, uid, m, mb, ok, err := dueMessage(tx, k, users, boxes, &live)
		if err != nil {
			return res, err
		}
		if !ok {
			// Stale: the message is gone, read, or dated differently.
			if err := b.Delete(k); err != nil {
				return res, err
			}
			continue
		}
		if err := x.untrack(uid, TrackExpired, live, ev); err != nil {
			return res, err
		}
		if err := x.remove(mb, uid, m, ev); err != nil {
			return res, err
		}
		res.removed++
	}
	for _, x := range live {
		if err := x.save(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// dueMessage resolves one index entry to its message; ok is false when the
// entry is stale. Mailboxes are opened once per transaction and added to
// live, since several messages of one mailbox share its counters.
func dueMessage(tx *bolt.Tx, k []byte, users map[string]*userTx, boxes map[string]*boxTx, live *[]*boxTx) (x *boxTx, uid imap.UID, m metaRecord, mb msgBuckets, ok bool, err error) {
	if len(k) <= 20 {
		return nil, 0, m, mb, false, nil
	}
	id := binary.BigEndian.Uint64(k[8:])
	uid = imap.UID(binary.BigEndian.Uint32(k[16:]))
	user := string(k[20:])
	u := users[user]
	if u == nil {
		if u, err = openUser(tx, user); err != nil {
			return nil, 0, m, mb, false, nil
		}
		users[user] = u
	}
	bk := string(k[8:16]) + user
	x = boxes[bk]
	if x == nil {
		if x, err = u.box(id); err != nil {
			return nil, 0, m, mb, false, nil
		}
		boxes[bk] = x
		*live = append(*live, x)
	}
	if mb, err = x.buckets(); err != nil {
		return nil, 0, m, mb, false, err
	}
	v := mb.meta.Get(be32(uint32(uid)))
	if v == nil {
		return nil, 0, m, mb, false, nil
	}
	if m, err = decodeMeta(v); err != nil {
		return nil, 0, m, mb, false, nil
	}
	if m.flags.sys&flagSeen != 0 || x.rec.Name != Inbox || !bytes.Equal(unreadKey(m.internalDate, x.id, uid, x.u.addr), k) {
		return nil, 0, m, mb, false, nil
	}
	return x, uid, m, mb, true, nil
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
		x, err := u.boxByName(Inbox)
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
