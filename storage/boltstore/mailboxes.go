package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// boxTx is one mailbox's bucket inside a transaction, with its record.
type boxTx struct {
	u   *userTx
	id  uint64
	b   *bolt.Bucket
	rec mailboxRecord
}

func (u *userTx) box(id uint64) (*boxTx, error) {
	b := u.boxes.Bucket(be64(id))
	if b == nil {
		return nil, fmt.Errorf("mailbox %d of %s: %w", id, u.addr, storage.ErrNotFound)
	}
	rec, err := decodeMailbox(b.Get(keyInfo))
	if err != nil {
		return nil, fmt.Errorf("mailbox %d of %s: %w", id, u.addr, err)
	}
	return &boxTx{u: u, id: id, b: b, rec: rec}, nil
}

// boxByName finds a mailbox by its normalized name.
func (u *userTx) boxByName(name string) (*boxTx, error) {
	v := u.names.Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("mailbox %q of %s: %w", name, u.addr, storage.ErrNotFound)
	}
	if len(v) != 8 {
		return nil, fmt.Errorf("mailbox %q of %s: %w", name, u.addr, errCorrupt)
	}
	return u.box(beUint64(v))
}

func (x *boxTx) save() error {
	return x.b.Put(keyInfo, x.rec.encode())
}

func (x *boxTx) mailbox() storage.Mailbox {
	return storage.Mailbox{
		ID:          x.id,
		Name:        x.rec.Name,
		SpecialUse:  x.rec.SpecialUse,
		UIDValidity: x.rec.UIDValidity,
		UIDNext:     imap.UID(x.rec.UIDNext),
		Subscribed:  x.u.isSubscribed(x.rec.Name, &x.rec),
	}
}

func (x *boxTx) status() storage.MailboxStatus {
	return storage.MailboxStatus{
		Mailbox:  x.mailbox(),
		Messages: x.rec.Messages,
		Unseen:   x.rec.Unseen,
		Size:     x.rec.Size,

		HighestModSeq: x.rec.ModSeq,
	}
}

// nextUIDValidity issues a store-wide unique UIDVALIDITY. It never goes
// below the clock, so even a database restored from an old backup does not
// hand out a value it issued after that backup was taken.
func nextUIDValidity(tx *bolt.Tx, now time.Time) (uint32, error) {
	meta := tx.Bucket(bucketMeta)
	var last uint32
	if v := meta.Get(keyUIDValid); len(v) == 4 {
		last = binary.BigEndian.Uint32(v)
	}
	next := last + 1
	if t := now.Unix(); t > int64(next) && t <= int64(^uint32(0)) {
		next = uint32(t)
	}
	if next == 0 {
		// RFC 3501 2.3.1.1: UIDVALIDITY is a non-zero 32-bit value.
		next = 1
	}
	return next, meta.Put(keyUIDValid, be32(next))
}

// createMailbox creates one mailbox (not its parents). A name that was used
// before continues from the UIDNEXT it had, so no UID is ever handed out
// twice under one name, even across a change of UIDVALIDITY.
func (u *userTx) createMailbox(name string, attr imap.MailboxAttr, subscribed bool, now time.Time) (uint64, error) {
	if u.names.Get([]byte(name)) != nil {
		return 0, fmt.Errorf("mailbox %q of %s: %w", name, u.addr, storage.ErrExists)
	}
	id, err := u.tx.Bucket(bucketMeta).NextSequence()
	if err != nil {
		return 0, err
	}
	uv, err := nextUIDValidity(u.tx, now)
	if err != nil {
		return 0, err
	}
	rec := mailboxRecord{
		Name:        name,
		SpecialUse:  attr,
		UIDValidity: uv,
		UIDNext:     1,
		Subscribed:  subscribed,
		ModSeq:      1,
	}
	if g := u.graves.Get([]byte(name)); len(g) == 4 {
		rec.UIDNext = binary.BigEndian.Uint32(g)
	}
	if subscribed {
		if _, err := u.setSubscription(name, true); err != nil {
			return 0, err
		}
	}
	b, err := u.boxes.CreateBucket(be64(id))
	if err != nil {
		return 0, err
	}
	for _, name := range [][]byte{bucketMsgMeta, bucketParsed, bucketBody} {
		if _, err := b.CreateBucket(name); err != nil {
			return 0, err
		}
	}
	if err := createFeed(b); err != nil {
		return 0, err
	}
	if err := b.Put(keyInfo, rec.encode()); err != nil {
		return 0, err
	}
	return id, u.names.Put([]byte(name), be64(id))
}

// bury remembers the UIDNEXT of a name that is going away.
func (u *userTx) bury(name string, uidNext uint32) error {
	if g := u.graves.Get([]byte(name)); len(g) == 4 && binary.BigEndian.Uint32(g) >= uidNext {
		return nil
	}
	return u.graves.Put([]byte(name), be32(uidNext))
}

// createParents creates the missing ancestors of name (RFC 3501 6.3.3 and
// 6.3.5: CREATE and RENAME create the superior hierarchy).
func (u *userTx) createParents(name string, now time.Time, ev *eventList) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		if u.names.Get([]byte(parent)) != nil {
			continue
		}
		id, err := u.createMailbox(parent, "", false, now)
		if err != nil {
			return err
		}
		ev.Add(storage.Event{Kind: storage.EventMailboxes, User: u.addr, MailboxID: id, ModSeq: 1})
	}
	return nil
}

// Mailboxes lists a user's mailboxes ordered by name.
func (s *boltStore) Mailboxes(ctx context.Context, user string) ([]storage.Mailbox, error) {
	var list []storage.Mailbox
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := openUser(tx, user)
		if err != nil {
			return err
		}
		c := u.names.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) != 8 {
				return fmt.Errorf("mailbox %q: %w", k, errCorrupt)
			}
			x, err := u.box(beUint64(v))
			if err != nil {
				return err
			}
			list = append(list, x.mailbox())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: mailboxes: %w", err)
	}
	return list, nil
}

func (s *boltStore) mailboxStatus(ctx context.Context, user, name string) (*storage.MailboxStatus, error) {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	var st storage.MailboxStatus
	err = s.view(ctx, func(tx *bolt.Tx) error {
		u, err := openUser(tx, user)
		if err != nil {
			return err
		}
		x, err := u.boxByName(n)
		if err != nil {
			return err
		}
		st = x.status()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &st, nil
}

// Mailbox returns one mailbox by name.
func (s *boltStore) Mailbox(ctx context.Context, user, name string) (*storage.Mailbox, error) {
	st, err := s.mailboxStatus(ctx, user, name)
	if err != nil {
		return nil, err
	}
	return &st.Mailbox, nil
}

// MailboxStatus returns a mailbox with its counters: one small read.
func (s *boltStore) MailboxStatus(ctx context.Context, user, name string) (*storage.MailboxStatus, error) {
	return s.mailboxStatus(ctx, user, name)
}

// CreateMailbox creates a mailbox and its missing parents.
func (s *boltStore) CreateMailbox(ctx context.Context, user, name string) error {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return fmt.Errorf("storage: create mailbox: %w", err)
	}
	now := time.Now()
	_, err = write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, user)
		if err != nil {
			return struct{}{}, err
		}
		if u.names.Get([]byte(n)) != nil {
			return struct{}{}, fmt.Errorf("mailbox %q of %s: %w", n, u.addr, storage.ErrExists)
		}
		if err := u.createParents(n, now, ev); err != nil {
			return struct{}{}, err
		}
		id, err := u.createMailbox(n, "", false, now)
		if err != nil {
			return struct{}{}, err
		}
		ev.Add(storage.Event{Kind: storage.EventMailboxes, User: u.addr, MailboxID: id, ModSeq: 1})
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("storage: create mailbox: %w", err)
	}
	return nil
}

// DeleteMailbox deletes a mailbox with its messages; its children stay.
// No expunge events are sent: EventMailboxes ends the sessions that have it
// selected.
func (s *boltStore) DeleteMailbox(ctx context.Context, user, name string) error {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return fmt.Errorf("storage: delete mailbox: %w", err)
	}
	if storage.IsProtected(n) {
		return fmt.Errorf("storage: delete mailbox %q: %w", n, storage.ErrProtected)
	}
	_, err = write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, user)
		if err != nil {
			return struct{}{}, err
		}
		x, err := u.boxByName(n)
		if err != nil {
			return struct{}{}, err
		}
		if err := u.bury(n, x.rec.UIDNext); err != nil {
			return struct{}{}, err
		}
		if err := x.untrackMailbox(ev); err != nil {
			return struct{}{}, err
		}
		if err := x.releaseBodies(); err != nil {
			return struct{}{}, err
		}
		if err := u.boxes.DeleteBucket(be64(x.id)); err != nil {
			return struct{}{}, err
		}
		if err := u.names.Delete([]byte(n)); err != nil {
			return struct{}{}, err
		}
		ev.Add(storage.Event{Kind: storage.EventMailboxes, User: u.addr, MailboxID: x.id})
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("storage: delete mailbox: %w", err)
	}
	return nil
}

// RenameMailbox renames a mailbox and everything under it. The mailboxes
// keep their IDs, UIDVALIDITY and messages; only the name index changes.
func (s *boltStore) RenameMailbox(ctx context.Context, user, oldName, newName string) error {
	from, to, err := storage.RenameNames(oldName, newName)
	if err != nil {
		return fmt.Errorf("storage: rename mailbox: %w", err)
	}
	now := time.Now()
	_, err = write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, user)
		if err != nil {
			return struct{}{}, err
		}
		if u.names.Get([]byte(from)) == nil {
			return struct{}{}, fmt.Errorf("mailbox %q of %s: %w", from, u.addr, storage.ErrNotFound)
		}
		type move struct {
			from, to string
			id       uint64
			modseq   uint64
		}
		moves := []move{{from: from, to: to, id: beUint64(u.names.Get([]byte(from)))}}
		prefix := []byte(from + "/")
		c := u.names.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			moves = append(moves, move{from: string(k), to: to + string(k[len(from):]), id: beUint64(v)})
		}
		for _, m := range moves {
			if u.names.Get([]byte(m.to)) != nil {
				return struct{}{}, fmt.Errorf("mailbox %q of %s: %w", m.to, u.addr, storage.ErrExists)
			}
		}
		for i, m := range moves {
			x, err := u.box(m.id)
			if err != nil {
				return struct{}{}, err
			}
			if err := u.bury(m.from, x.rec.UIDNext); err != nil {
				return struct{}{}, err
			}
			if err := u.names.Delete([]byte(m.from)); err != nil {
				return struct{}{}, err
			}
			if err := u.names.Put([]byte(m.to), be64(m.id)); err != nil {
				return struct{}{}, err
			}
			if err := u.renameSubscription(m.from, m.to, &x.rec); err != nil {
				return struct{}{}, err
			}
			x.rec.Name = m.to
			moves[i].modseq = x.bump()
			if err := x.save(); err != nil {
				return struct{}{}, err
			}
		}
		if err := u.createParents(to, now, ev); err != nil {
			return struct{}{}, err
		}
		for _, m := range moves {
			ev.Add(storage.Event{Kind: storage.EventMailboxes, User: u.addr, MailboxID: m.id, ModSeq: m.modseq})
		}
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("storage: rename mailbox: %w", err)
	}
	return nil
}

// SetSubscribed adds a mailbox's name to the user's subscription list or
// removes it (subscriptions.go). Subscribing needs an existing mailbox
// (ErrNotFound otherwise); unsubscribing takes any name on the list, also
// one whose mailbox was deleted. A change of an existing mailbox's
// subscription is a change of the mailbox (its modseq moves on).
func (s *boltStore) SetSubscribed(ctx context.Context, user, name string, subscribed bool) error {
	n, err := storage.NormalizeMailboxName(name)
	if err != nil {
		return fmt.Errorf("storage: subscribe: %w", err)
	}
	_, err = write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		u, err := openUser(tx, user)
		if err != nil {
			return struct{}{}, err
		}
		x, err := u.boxByName(n)
		if errors.Is(err, storage.ErrNotFound) && !subscribed && u.isSubscribed(n, nil) {
			_, err := u.setSubscription(n, false)
			return struct{}{}, err
		}
		if err != nil {
			return struct{}{}, err
		}
		changed, err := u.setSubscription(n, subscribed)
		if err != nil || (!changed && x.rec.Subscribed == subscribed) {
			return struct{}{}, err
		}
		x.rec.Subscribed = subscribed
		x.bump()
		return struct{}{}, x.save()
	})
	if err != nil {
		return fmt.Errorf("storage: subscribe: %w", err)
	}
	return nil
}

func beUint64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
