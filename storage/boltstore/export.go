package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/pochta/pochta/storage"
)

var _ storage.Exporter = (*boltStore)(nil)

// Export walks the whole database in one read transaction (storage.Exporter):
// users by address, their mailboxes by ID, messages by UID, with the
// counters (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) and each message's modseq
// as stored; then the read-tracking records, the queue's entries with
// their bodies, and the queue's state (relay health, day counters and
// alerts). It only reads: the file is left as it was. A user without a
// subscription list of its own (Subscriptions nil) subscribes exactly to
// the mailboxes marked Subscribed. Undecodable tracking records are left
// out, as the rules ignore them.
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
		if err := exportTracking(tx, v); err != nil {
			return err
		}
		if err := exportQueue(tx, v); err != nil {
			return err
		}
		return exportQueueState(tx, v)
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
	if p := u.b.Get(keyWebPrefs); p != nil {
		if err := json.Unmarshal(p, &eu.WebPrefs); err != nil {
			return fmt.Errorf("web preferences: %w: %v", errCorrupt, err)
		}
	}
	if err := u.graves.ForEach(func(k, g []byte) error {
		if len(g) == 4 {
			if eu.Graves == nil {
				eu.Graves = map[string]uint32{}
			}
			eu.Graves[string(k)] = binary.BigEndian.Uint32(g)
		}
		return nil
	}); err != nil {
		return err
	}
	if b := u.b.Bucket(bucketSentIDs); b != nil {
		t := boltTx{tx: tx, u: u}
		if err := b.ForEach(func(k, _ []byte) error {
			e, ok, err := t.SentID(addr, string(k))
			if ok {
				eu.SentIDs = append(eu.SentIDs, storage.ExportedSentID{MessageID: string(k), Entry: e})
			}
			return err
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
	em := &storage.ExportedMailbox{
		User: u.addr, ID: id, Name: rec.Name, SpecialUse: rec.SpecialUse,
		UIDValidity: rec.UIDValidity, UIDNext: rec.UIDNext, Subscribed: rec.Subscribed,
		HighestModSeq: rec.ModSeq, VanishedFloor: rec.VanishedFloor,
	}
	if vb := b.Bucket(bucketVanished); vb != nil {
		if err := vb.ForEach(func(k, at []byte) error {
			modseq, uid, ok := parseFeedKey(k)
			if ok && len(at) == 8 {
				em.Vanished = append(em.Vanished, storage.Tombstone{UID: uid, ModSeq: modseq, Expunged: time.Unix(0, int64(binary.BigEndian.Uint64(at))).UTC()})
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := v.Mailbox(em); err != nil {
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
			Shared: sharedPart(refs, k, sm),
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func exportTracking(tx *bolt.Tx, v storage.ExportVisitor) error {
	b := tx.Bucket(bucketTracking)
	if b == nil {
		return nil
	}
	t := boltTx{tx: tx}
	return b.ForEach(func(k, _ []byte) error {
		if len(k) != 8 {
			return nil
		}
		id := binary.BigEndian.Uint64(k)
		rec, ok := t.TrackingRecord(id)
		if !ok {
			return nil
		}
		return v.VisitTracking(&storage.ExportedTracking{ID: id, Record: *rec})
	})
}

func exportQueue(tx *bolt.Tx, v storage.ExportVisitor) error {
	b := queueBucket(tx, bucketQEntries)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, _ []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("queue entry key %x: %w", k, errCorrupt)
		}
		id := binary.BigEndian.Uint64(k)
		e, err := loadEntry(tx, id, false)
		if err != nil {
			return err
		}
		sm, err := queueStored(tx, id)
		if err != nil {
			return err
		}
		e.Body = string(sm.bytes())
		return v.VisitQueueEntry(&storage.ExportedQueueEntry{Entry: e, Shared: sharedPart(queueBucket(tx, bucketQBodyRefs), k, sm)})
	})
}

func exportQueueState(tx *bolt.Tx, v storage.ExportVisitor) error {
	st := &storage.ExportedQueueState{}
	st.RelayState, _ = boltTx{tx: tx}.RelayState()
	if b := queueBucket(tx, bucketQDaily); b != nil {
		if err := b.ForEach(func(k, val []byte) error {
			day, user, ok := parseDailyKey(k)
			if ok && len(val) == 8 {
				st.Days = append(st.Days, storage.DayCount{Day: day, User: user, Count: int(binary.BigEndian.Uint64(val))})
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if b := queueBucket(tx, bucketQAlerted); b != nil {
		if err := b.ForEach(func(k, _ []byte) error {
			if day, user, ok := parseDailyKey(k); ok {
				st.Alerts = append(st.Alerts, storage.DayMark{Day: day, User: user})
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return v.VisitQueueState(st)
}

// parseDailyKey reverses dailyKey.
func parseDailyKey(k []byte) (day, user string, ok bool) {
	day, rest, ok := strings.Cut(string(k), "|")
	if !ok {
		return "", "", false
	}
	if rest == "system" {
		return day, "", true
	}
	user, ok = strings.CutPrefix(rest, "user|")
	return day, user, ok
}

// sharedPart says which part of a copy stored as sm (under key, its refs
// in refs) is a shared body (loadStored has checked the ref).
func sharedPart(refs *bolt.Bucket, key []byte, sm storedMessage) storage.SharedPart {
	if refs == nil || sm.shared == nil {
		return storage.SharedPart{}
	}
	ref, err := decodeSharedRef(refs.Get(key))
	if err != nil {
		return storage.SharedPart{}
	}
	return storage.SharedPart{ID: ref.id, Offset: len(sm.own)}
}
