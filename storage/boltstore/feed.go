package boltstore

// The change feed (RFC 7162 modification sequences) in bbolt. Inside each
// mailbox bucket, next to "meta", "parsed" and "body":
//
//	"changes"/<modseq><uid>   -> empty: one entry per existing message, at
//	                             the modseq of its last change (arrival or
//	                             flags); the entry moves when the message
//	                             changes and goes when it is expunged
//	"vanished"/<modseq><uid>  -> expunge time (unix nanoseconds, be64): the
//	                             tombstone of an expunged message
//
// (modseq is a big-endian uint64 and uid a big-endian uint32, so a cursor
// Seek to modseq N+1 walks exactly the changes after N, in modseq order.)
// The mailbox record carries HIGHESTMODSEQ (ModSeq) and VanishedFloor, the
// highest modseq whose tombstone is no longer kept.
//
// Rules:
//   - Every change takes x.bump(): the next modseq of its mailbox, issued
//     inside the write transaction, so modseqs are strictly ascending in
//     commit order and a rolled-back transaction issues nothing.
//   - Tombstones live TombstoneLifetime; sweepTombstones removes older ones
//     (the store runs it a minute after Open and then hourly) and raises
//     VanishedFloor, so Changes can tell a reader that asks about older
//     changes that its vanished list is incomplete.
//   - ReadBody reads a body in chunks, each chunk in its own read
//     transaction. Bodies never change once stored, so the chunks are one
//     message; one that is expunged while being read ends the read with
//     ErrNotFound. No read transaction outlives one ReadAt, so a slow
//     reader (a client that does not read its socket) never stalls the
//     writer when bbolt has to grow its memory map.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketChanges  = []byte("changes")
	bucketVanished = []byte("vanished")
)

// sweepInterval is how often the store sweeps old tombstones; the first
// sweep runs sweepDelay after Open, so short-lived commands never do.
const (
	sweepInterval = time.Hour
	sweepDelay    = time.Minute
)

// feedKey is the key of one change index entry or tombstone.
func feedKey(modseq uint64, uid imap.UID) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, modseq)
	binary.BigEndian.PutUint32(k[8:], uint32(uid))
	return k
}

func parseFeedKey(k []byte) (uint64, imap.UID, bool) {
	if len(k) != 12 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k), imap.UID(binary.BigEndian.Uint32(k[8:])), true
}

// createFeed creates a mailbox's feed buckets.
func createFeed(b *bolt.Bucket) error {
	for _, name := range [][]byte{bucketChanges, bucketVanished} {
		fb, err := b.CreateBucket(name)
		if err != nil {
			return err
		}
		fb.FillPercent = appendFillPercent
	}
	return nil
}

func (x *boxTx) feed() (changes, vanished *bolt.Bucket, err error) {
	changes, vanished = x.b.Bucket(bucketChanges), x.b.Bucket(bucketVanished)
	if changes == nil || vanished == nil {
		return nil, nil, fmt.Errorf("mailbox %d: no change feed: %w", x.id, errCorrupt)
	}
	return changes, vanished, nil
}

// bump issues the mailbox's next modseq (saved with the record by the
// caller's x.save).
func (x *boxTx) bump() uint64 {
	x.rec.ModSeq++
	return x.rec.ModSeq
}

// recordChange moves uid's change index entry from modseq old (0: a new
// message) to modseq now.
func (x *boxTx) recordChange(uid imap.UID, old, now uint64) error {
	changes, _, err := x.feed()
	if err != nil {
		return err
	}
	if old != 0 {
		if err := changes.Delete(feedKey(old, uid)); err != nil {
			return err
		}
	}
	return changes.Put(feedKey(now, uid), []byte{})
}

// recordExpunge drops uid's change index entry (at modseq old) and leaves
// its tombstone at a new modseq, which it returns.
func (x *boxTx) recordExpunge(uid imap.UID, old uint64) (uint64, error) {
	changes, vanished, err := x.feed()
	if err != nil {
		return 0, err
	}
	if old != 0 {
		if err := changes.Delete(feedKey(old, uid)); err != nil {
			return 0, err
		}
	}
	modseq := x.bump()
	return modseq, vanished.Put(feedKey(modseq, uid), be64(uint64(time.Now().UnixNano())))
}

// Changes reads the change index after since and the tombstones after
// since; the cost is the number of changes, not the size of the mailbox.
func (s *boltStore) Changes(ctx context.Context, user string, mailboxID uint64, since uint64) (*storage.ChangeSet, error) {
	cs := &storage.ChangeSet{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		x, err := openBox(tx, user, mailboxID)
		if err != nil {
			return err
		}
		mb, err := x.buckets()
		if err != nil {
			return err
		}
		changes, vanished, err := x.feed()
		if err != nil {
			return err
		}
		cs.HighestModSeq = x.rec.ModSeq
		cs.VanishedIncomplete = since < x.rec.VanishedFloor
		if since >= x.rec.ModSeq {
			return nil
		}
		start := feedKey(since+1, 0)
		c := changes.Cursor()
		for k, _ := c.Seek(start); k != nil; k, _ = c.Next() {
			s.feedReads.Add(1)
			modseq, uid, ok := parseFeedKey(k)
			if !ok {
				return fmt.Errorf("mailbox %d: change key %x: %w", mailboxID, k, errCorrupt)
			}
			v := mb.meta.Get(be32(uint32(uid)))
			if v == nil {
				continue // quarantined by check
			}
			m, err := decodeMeta(v)
			if err != nil {
				return fmt.Errorf("message %d: %w", uid, err)
			}
			if m.modseq != modseq {
				continue
			}
			cs.Changed = append(cs.Changed, storage.FlagUpdate{UID: uid, Flags: m.flags.list(), ModSeq: modseq})
		}
		vc := vanished.Cursor()
		for k, _ := vc.Seek(start); k != nil; k, _ = vc.Next() {
			s.feedReads.Add(1)
			_, uid, ok := parseFeedKey(k)
			if !ok {
				return fmt.Errorf("mailbox %d: tombstone key %x: %w", mailboxID, k, errCorrupt)
			}
			cs.Vanished = append(cs.Vanished, uid)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: changes: %w", err)
	}
	slices.SortFunc(cs.Changed, func(a, b storage.FlagUpdate) int { return cmp.Compare(a.UID, b.UID) })
	slices.Sort(cs.Vanished)
	return cs, nil
}

// sweepTombstones removes the tombstones of expunges before cutoff and
// returns how many it removed. It finds them with a read transaction
// (one cursor step per mailbox) and writes only when some are due.
func (s *boltStore) sweepTombstones(ctx context.Context, cutoff time.Time) (int, error) {
	type boxRef struct {
		user string
		id   uint64
	}
	limit := uint64(cutoff.UnixNano())
	var due []boxRef
	err := s.view(ctx, func(tx *bolt.Tx) error {
		uc := tx.Bucket(bucketUsers).Cursor()
		for uk, uv := uc.First(); uk != nil; uk, uv = uc.Next() {
			if uv != nil {
				continue
			}
			boxes := tx.Bucket(bucketUsers).Bucket(uk).Bucket(bucketBoxes)
			if boxes == nil {
				continue
			}
			bc := boxes.Cursor()
			for id, bv := bc.First(); id != nil; id, bv = bc.Next() {
				if bv != nil {
					continue
				}
				vb := boxes.Bucket(id).Bucket(bucketVanished)
				if vb == nil {
					continue
				}
				if _, t := vb.Cursor().First(); len(t) == 8 && binary.BigEndian.Uint64(t) < limit {
					due = append(due, boxRef{user: string(uk), id: beUint64(id)})
				}
			}
		}
		return nil
	})
	if err != nil || len(due) == 0 {
		return 0, err
	}
	return write(s, ctx, 0, func(tx *bolt.Tx, _ *eventList) (int, error) {
		n := 0
		for _, ref := range due {
			x, err := openBox(tx, ref.user, ref.id)
			if err != nil {
				continue // deleted meanwhile
			}
			_, vanished, err := x.feed()
			if err != nil {
				return 0, err
			}
			var old [][]byte
			c := vanished.Cursor()
			for k, t := c.First(); k != nil; k, t = c.Next() {
				if len(t) == 8 && binary.BigEndian.Uint64(t) >= limit {
					break
				}
				old = append(old, bytes.Clone(k))
			}
			for _, k := range old {
				if err := vanished.Delete(k); err != nil {
					return 0, err
				}
				if modseq, _, ok := parseFeedKey(k); ok && modseq > x.rec.VanishedFloor {
					x.rec.VanishedFloor = modseq
				}
			}
			if len(old) > 0 {
				n += len(old)
				if err := x.save(); err != nil {
					return 0, err
				}
			}
		}
		return n, nil
	})
}

// runSweeper sweeps old tombstones until Close.
func (s *boltStore) runSweeper() {
	defer close(s.sweepDone)
	t := time.NewTimer(sweepDelay)
	defer t.Stop()
	for {
		select {
		case <-s.sweepStop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.sweepStop:
			case <-ctx.Done():
			}
			cancel()
		}()
		n, err := s.sweepTombstones(ctx, time.Now().Add(-storage.TombstoneLifetime))
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("storage: sweeping old expunge tombstones failed", "err", err)
		case n > 0:
			s.log.Info("storage: swept old expunge tombstones", "removed", n)
		}
		t.Reset(sweepInterval)
	}
}

// bodyChunk bounds what one ReadAt of a body copies in one transaction.
const bodyChunk = 256 << 10

// bodyReader reads one stored body, each ReadAt in its own read
// transaction (see the rules at the top of this file).
type bodyReader struct {
	s    *boltStore
	ctx  context.Context
	user string
	box  uint64
	uid  imap.UID
	size int64
}

func (r *bodyReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("storage: read body: negative offset: %w", storage.ErrInvalid)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off+int64(n) < r.size {
		part := p[n:min(len(p), n+bodyChunk)]
		var got int
		err := r.s.view(r.ctx, func(tx *bolt.Tx) error {
			b, err := r.s.body(tx, r.user, r.box, r.uid)
			if err != nil {
				return err
			}
			if b.size() != r.size {
				return fmt.Errorf("message %d changed size: %w", r.uid, errCorrupt)
			}
			got = b.copyAt(part, off+int64(n))
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("storage: read body: %w", err)
		}
		n += got
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// body returns one stored message, its own bytes and any shared body it
// references (pointing into the database's memory: valid only inside tx).
func (s *boltStore) body(tx *bolt.Tx, user string, box uint64, uid imap.UID) (storedMessage, error) {
	x, err := openBox(tx, user, box)
	if err != nil {
		return storedMessage{}, err
	}
	mb, err := x.buckets()
	if err != nil {
		return storedMessage{}, err
	}
	key := be32(uint32(uid))
	if mb.body.Get(key) == nil {
		return storedMessage{}, fmt.Errorf("message %d of mailbox %d: %w", uid, box, storage.ErrNotFound)
	}
	return x.stored(mb, key)
}

// ReadBody calls fn with a reader over one message's bytes.
func (s *boltStore) ReadBody(ctx context.Context, user string, mailboxID uint64, uid imap.UID, fn func(body *io.SectionReader) error) error {
	var size int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, err := s.body(tx, user, mailboxID, uid)
		size = b.size()
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: read body: %w", err)
	}
	r := &bodyReader{s: s, ctx: ctx, user: user, box: mailboxID, uid: uid, size: size}
	return fn(io.NewSectionReader(r, 0, size))
}
