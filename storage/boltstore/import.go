package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pochta/pochta/storage"
)

var _ storage.Importer = (*boltStore)(nil)

// Empty reports whether the database holds no users, no read-tracking
// records and no queue entries (storage.Importer).
func (s *boltStore) Empty(ctx context.Context) (bool, error) {
	var empty bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		empty = emptyIn(tx)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("storage: empty: %w", err)
	}
	return empty, nil
}

func emptyIn(tx *bolt.Tx) bool {
	for _, b := range []*bolt.Bucket{tx.Bucket(bucketUsers), tx.Bucket(bucketTracking), queueBucket(tx, bucketQEntries)} {
		if b != nil {
			if k, _ := b.Cursor().First(); k != nil {
				return false
			}
		}
	}
	return true
}

// EmptyFile reports, without writing to it, whether the bbolt file at
// path holds a database that is Empty (a move may copy into it); an error
// when it is no bbolt database, or another process holds it.
func EmptyFile(path string) (bool, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return false, fmt.Errorf("storage: %s: %w", path, err)
	}
	defer db.Close()
	var empty bool
	err = db.View(func(tx *bolt.Tx) error {
		empty = emptyIn(tx)
		return nil
	})
	return empty, err
}

// Import writes what from walks, as it is (storage.Importer): users with
// their password hashes, subscriptions, web preferences, Sent
// de-duplication index and deleted mailboxes' UIDNEXT; mailboxes with their
// UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and expunge tombstones; messages
// with their UIDs, flags, internal dates and modseqs, a body the source
// stored once for several copies stored once again; read-tracking records
// and queue entries under their IDs, the entries with their bodies, every
// status kept and the leases cleared; the relay's health, day counters and
// alerts. Records go in batches of at most storage.ImportBatchRecords
// records or storage.ImportBatchBytes bytes, each one transaction; a
// failed Import leaves what it committed, so the caller imports into an
// empty database (Empty) and starts again from a new file. Mailboxes get
// this database's IDs, and every record that names one is rewritten to
// match.
func (s *boltStore) Import(ctx context.Context, from storage.Exporter) error {
	im := &boltImporter{s: s, ctx: ctx, boxes: map[uint64]*storage.ExportedMailbox{},
		bodies: map[uint64]uint64{}, fresh: map[uint64]uint64{}}
	im.batch.Write = func(fns []func(*bolt.Tx) error, size int) error {
		_, err := write(s, ctx, size, func(tx *bolt.Tx, _ *eventList) (struct{}, error) {
			clear(im.fresh) // a run again after a rollback starts over
			for _, fn := range fns {
				if err := fn(tx); err != nil {
					return struct{}{}, err
				}
			}
			return struct{}{}, nil
		})
		if err == nil {
			maps.Copy(im.bodies, im.fresh)
		}
		return err
	}
	err := from.Export(ctx, storage.ExportVisitor{
		User:    im.user,
		Mailbox: im.mailbox,
		Message: im.message,
		Tracking: func(t *storage.ExportedTracking) error {
			return im.add(0, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(bucketTracking)
				if err != nil {
					return err
				}
				if err := raiseSequence(b, t.ID); err != nil {
					return err
				}
				return storage.ImportTracking(records(tx), t, &im.ids)
			})
		},
		QueueEntry: func(e *storage.ExportedQueueEntry) error {
			return im.add(len(e.Entry.Body), func(tx *bolt.Tx) error { return im.queueEntry(tx, e) })
		},
		QueueState: func(st *storage.ExportedQueueState) error {
			return im.add(0, func(tx *bolt.Tx) error { return storage.ImportQueueState(records(tx), st) })
		},
	})
	if err == nil {
		err = im.endUser()
	}
	if err == nil {
		err = im.flush()
	}
	if err != nil {
		return fmt.Errorf("storage: import: %w", err)
	}
	return nil
}

// raiseSequence makes b's sequence (which issues IDs) at least id.
func raiseSequence(b *bolt.Bucket, id uint64) error {
	if b.Sequence() >= id {
		return nil
	}
	return b.SetSequence(id)
}

type boltImporter struct {
	s   *boltStore
	ctx context.Context
	ids storage.ImportIDs
	// boxes are the mailboxes of the user walked, by our ID, with the
	// counters their record ends with.
	boxes map[uint64]*storage.ExportedMailbox
	// walked is the user being walked, whose Sent index is written once
	// its mailboxes have IDs.
	walked *storage.ExportedUser
	batch  storage.ImportBatch[*bolt.Tx]
	// bodies maps the source's shared bodies to ours; fresh holds those
	// stored by the transaction being run, until it commits.
	bodies, fresh map[uint64]uint64
}

// shared returns the shared body that body[part.Offset:] is, storing it
// on first use; nil when the copy's bytes are its own.
func (im *boltImporter) shared(tx *bolt.Tx, part storage.SharedPart, body []byte) (*sharedBody, error) {
	if part.ID == 0 || part.Offset < 0 || part.Offset >= len(body) {
		return nil, nil
	}
	sb := &sharedBody{body: body[part.Offset:]}
	if id, ok := im.bodies[part.ID]; ok {
		sb.id = id
		return sb, nil
	}
	if id, ok := im.fresh[part.ID]; ok {
		sb.id = id
		return sb, nil
	}
	if err := sb.store(tx); err != nil {
		return nil, err
	}
	im.fresh[part.ID] = sb.id
	return sb, nil
}

// add queues one write after the users' part of the walk.
func (im *boltImporter) add(size int, fn func(tx *bolt.Tx) error) error {
	if err := im.endUser(); err != nil {
		return err
	}
	return im.batch.Add(size, fn)
}

func (im *boltImporter) flush() error { return im.batch.Flush() }

// endUser writes the Sent index of the user walked last, in place of the
// one the stored messages made (which dates every entry now).
func (im *boltImporter) endUser() error {
	u := im.walked
	if u == nil {
		return nil
	}
	im.walked = nil
	clear(im.boxes)
	if err := im.flush(); err != nil {
		return err
	}
	_, err := write(im.s, im.ctx, 0, func(tx *bolt.Tx, _ *eventList) (struct{}, error) {
		ut, err := openUser(tx, u.Record.Address)
		if err != nil {
			return struct{}{}, err
		}
		if ut.b.Bucket(bucketSentIDs) != nil {
			if err := ut.b.DeleteBucket(bucketSentIDs); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, storage.ImportSentIDs(boltTx{tx: tx, u: ut}, u.Record.Address, u.SentIDs, &im.ids)
	})
	return err
}

func (im *boltImporter) user(u *storage.ExportedUser) error {
	if err := im.endUser(); err != nil {
		return err
	}
	prefs, err := json.Marshal(u.WebPrefs)
	if err != nil {
		return fmt.Errorf("user %s: web preferences: %w", u.Record.Address, err)
	}
	_, err = write(im.s, im.ctx, 0, func(tx *bolt.Tx, _ *eventList) (struct{}, error) {
		rec := u.Record
		if err := records(tx).CreateUserRecord(&rec); err != nil {
			return struct{}{}, err
		}
		ut, err := openUser(tx, rec.Address)
		if err != nil {
			return struct{}{}, err
		}
		if err := ut.b.Put(keyWebPrefs, prefs); err != nil {
			return struct{}{}, err
		}
		for name, next := range u.Graves {
			if err := ut.bury(name, next); err != nil {
				return struct{}{}, err
			}
		}
		if _, err := ut.b.CreateBucketIfNotExists(bucketSubs); err != nil {
			return struct{}{}, err
		}
		for _, name := range u.Subscriptions {
			if _, err := ut.setSubscription(name, true); err != nil {
				return struct{}{}, fmt.Errorf("subscription %q: %w", name, err)
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("user %s: %w", u.Record.Address, err)
	}
	im.walked = u
	return nil
}

func (im *boltImporter) mailbox(m *storage.ExportedMailbox) error {
	if err := im.flush(); err != nil {
		return err
	}
	// A user exported without a subscription list of its own subscribes
	// to the mailboxes marked Subscribed.
	subscribe := im.walked != nil && im.walked.Subscriptions == nil && m.Subscribed
	id, err := write(im.s, im.ctx, 0, func(tx *bolt.Tx, _ *eventList) (uint64, error) {
		u, err := openUser(tx, m.User)
		if err != nil {
			return 0, err
		}
		// The graves are the source's: the record below sets UIDNEXT.
		id, err := u.createMailbox(m.Name, m.SpecialUse, subscribe, time.Now())
		if err != nil {
			return 0, err
		}
		x, err := u.box(id)
		if err != nil {
			return 0, err
		}
		x.rec.UIDValidity, x.rec.UIDNext, x.rec.ModSeq, x.rec.Subscribed = m.UIDValidity, m.UIDNext, max(m.HighestModSeq, 1), m.Subscribed
		x.rec.VanishedFloor = m.VanishedFloor
		_, vanished, err := x.feed()
		if err != nil {
			return 0, err
		}
		for _, v := range m.Vanished {
			if err := vanished.Put(feedKey(v.ModSeq, v.UID), be64(uint64(v.Expunged.UnixNano()))); err != nil {
				return 0, err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyUIDValid); len(v) != 4 || binary.BigEndian.Uint32(v) < m.UIDValidity {
			if err := meta.Put(keyUIDValid, be32(m.UIDValidity)); err != nil {
				return 0, err
			}
		}
		return id, x.save()
	})
	if err != nil {
		return fmt.Errorf("mailbox %s of %s: %w", m.Name, m.User, err)
	}
	im.ids.Set(m.User, m.ID, id)
	im.boxes[id] = m
	return nil
}

func (im *boltImporter) message(m *storage.ExportedMessage) error {
	id, ok := im.ids.Get(m.User, m.Mailbox)
	if !ok {
		return fmt.Errorf("message %d of %s: mailbox %d was not walked", m.UID, m.User, m.Mailbox)
	}
	box := im.boxes[id]
	p, err := prepare(&storage.NewMessage{Raw: m.Body, Flags: m.Flags, InternalDate: m.InternalDate}, time.Now())
	if err != nil {
		return fmt.Errorf("message %d of %s: %w", m.UID, m.User, err)
	}
	return im.batch.Add(len(m.Body), func(tx *bolt.Tx) error {
		x, err := openBox(tx, m.User, id)
		if err != nil {
			return err
		}
		// put stores under UIDNEXT with the next modseq: set both to the
		// message's, then back to the mailbox's.
		x.rec.UIDNext, x.rec.ModSeq = uint32(m.UID), max(m.ModSeq, 1)-1
		p.own, p.shared = nil, nil
		if sb, err := im.shared(tx, m.Shared, m.Body); err != nil {
			return err
		} else if sb != nil {
			p.own, p.shared = p.raw[:m.Shared.Offset], sb
		}
		var ev eventList
		if _, err := x.put(p.meta, p.parsed, p.form(), p.flags, int64(len(p.raw)), &ev); err != nil {
			return fmt.Errorf("message %d of %s: %w", m.UID, m.User, err)
		}
		x.rec.UIDNext, x.rec.ModSeq = box.UIDNext, max(box.HighestModSeq, 1)
		return x.save()
	})
}

// queueEntry writes one queue entry under its ID with its body, its lease
// cleared.
func (im *boltImporter) queueEntry(tx *bolt.Tx, e *storage.ExportedQueueEntry) error {
	c := storage.ImportedQueueEntry(e.Entry)
	if c.Rev > 0 {
		c.Rev-- // saveEntry counts this write
	}
	q, err := openQueue(tx)
	if err != nil {
		return err
	}
	if err := raiseSequence(q.entries, c.ID); err != nil {
		return err
	}
	p := &prepared{raw: []byte(c.Body)}
	sb, err := im.shared(tx, e.Shared, p.raw)
	if err != nil {
		return err
	}
	if sb != nil {
		p.own, p.shared = p.raw[:e.Shared.Offset], sb
	}
	if err := q.putBody(c.ID, p); err != nil {
		return fmt.Errorf("queue entry %d: %w", c.ID, err)
	}
	var ev eventList
	return q.saveEntry(nil, c, &ev)
}
