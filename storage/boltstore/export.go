package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/pochta/pochta/storage"
)

var _ storage.Exporter = (*boltStore)(nil)

// Export walks the whole database in one read transaction (storage.Exporter):
// users by address, their mailboxes by ID, messages by UID, with the
// counters (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) and each message's modseq
// as stored. It only reads: the file is left as it was. A user without a
// subscription list of its own (Subscriptions nil) subscribes exactly to
// the mailboxes marked Subscribed.
func (s *boltStore) Export(ctx context.Context, v storage.ExportVisitor) error {
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUsers).Cursor()
		for k, val := c.First(); k != nil; k, val = c.Next() {
			if val != nil {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := exportUser(tx, string(k), v); err != nil {
				return fmt.Errorf("user %s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: export: %w", err)
	}
	return nil
}

func exportUser(tx *bolt.Tx, addr string, v storage.ExportVisitor) error {
	u, err := openUser(tx, addr)
	if err != nil {
		return err
	}
	rec, err := u.record()
	if err != nil {
		return err
	}
	eu := &storage.ExportedUser{Record: *rec}
	if subs := u.b.Bucket(bucketSubs); subs != nil {
		eu.Subscriptions = []string{}
		if err := subs.ForEach(func(k, _ []byte) error {
			eu.Subscriptions = append(eu.Subscriptions, string(k))
			return nil
		}); err != nil {
			return err
		}
	}
	if err := v.User(eu); err != nil {
		return err
	}
	bc := u.boxes.Cursor()
	for id, bv := bc.First(); id != nil; id, bv = bc.Next() {
		if bv != nil {
			continue
		}
		if len(id) != 8 {
			return fmt.Errorf("mailbox key %x: %w", id, errCorrupt)
		}
		if err := exportMailbox(tx, u, binary.BigEndian.Uint64(id), v); err != nil {
			return err
		}
	}
	return nil
}

func exportMailbox(tx *bolt.Tx, u *userTx, id uint64, v storage.ExportVisitor) error {
	b := u.boxes.Bucket(be64(id))
	rec, err := decodeMailbox(b.Get(keyInfo))
	if err != nil {
		return fmt.Errorf("mailbox %d: %w", id, err)
	}
	err = v.Mailbox(&storage.ExportedMailbox{
		User: u.addr, ID: id, Name: rec.Name, SpecialUse: rec.SpecialUse,
		UIDValidity: rec.UIDValidity, UIDNext: rec.UIDNext, Subscribed: rec.Subscribed,
		HighestModSeq: rec.ModSeq,
	})
	if err != nil {
		return err
	}
	meta, body := b.Bucket(bucketMsgMeta), b.Bucket(bucketBody)
	if meta == nil || body == nil {
		return fmt.Errorf("mailbox %d: %w", id, errCorrupt)
	}
	refs := b.Bucket(bucketBodyRef)
	mc := meta.Cursor()
	for k, mv := mc.First(); k != nil; k, mv = mc.Next() {
		if len(k) != 4 {
			return fmt.Errorf("mailbox %d: message key %x: %w", id, k, errCorrupt)
		}
		uid := imap.UID(binary.BigEndian.Uint32(k))
		m, err := decodeMeta(mv)
		if err != nil {
			return fmt.Errorf("mailbox %d: message %d: %w", id, uid, err)
		}
		sm, err := loadStored(tx, body, refs, k)
		if err != nil {
			return fmt.Errorf("mailbox %d: message %d: %w", id, uid, err)
		}
		err = v.Message(&storage.ExportedMessage{
			User: u.addr, Mailbox: id, UID: uid, Flags: m.flags.list(),
			InternalDate: m.internalDate, ModSeq: m.modseq, Body: sm.bytes(),
		})
		if err != nil {
			return err
		}
	}
	return nil
}
