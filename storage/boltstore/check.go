package boltstore

// Check and quarantine: `pochta check` reads every user, mailbox and
// message record and reports those it cannot decode; with repair it moves
// the undecodable messages out of their mailbox into the top-level
// "quarantine" bucket, which nothing that serves mail ever reads:
//
//	"quarantine"/<address>/<box id><uid>  quarantinedRecord (JSON): the
//	                                      mailbox name, the error and the
//	                                      raw meta/parsed/body bytes
//
// A quarantined message leaves its mailbox as an expunge does (sessions
// see it go, the counters and indexes follow), so the rest of the mailbox
// works again and nothing is lost: the bytes stay for a person to look at.
// A damaged bbolt page (not one record but the tree itself) is reported
// with UID 0 and cannot be repaired in place; restore a backup then.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

var bucketQuarantine = []byte("quarantine")

type quarantinedRecord struct {
	Mailbox     string    `json:"mailbox"`
	MailboxID   uint64    `json:"mailbox_id"`
	UID         uint32    `json:"uid"`
	Error       string    `json:"error"`
	Quarantined time.Time `json:"quarantined"`
	Meta        []byte    `json:"meta,omitempty"`
	Parsed      []byte    `json:"parsed,omitempty"`
	Body        []byte    `json:"body,omitempty"`
}

// badMessage locates one undecodable message for repair.
type badMessage struct {
	user  string
	box   uint64
	uid   uint32
	index int // into CheckReport.Bad
}

// Check implements Store.
func (s *boltStore) Check(ctx context.Context, repair bool) (*storage.CheckReport, error) {
	rep := &storage.CheckReport{Bad: []storage.BadRecord{}}
	var todo []badMessage
	err := s.view(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		var addrs []string
		c := users.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				addrs = append(addrs, string(k))
			}
		}
		for _, addr := range addrs {
			if err := ctx.Err(); err != nil {
				return err
			}
			// A damaged page panics somewhere below; it costs that user's
			// remaining records, not the check.
			if err := guard(s.path, func() error {
				todo = append(todo, checkUser(tx, addr, rep)...)
				return nil
			}); err != nil {
				rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Error: err.Error()})
			}
		}
		if err := guard(s.path, func() error { checkSharedBodies(tx, rep); return nil }); err != nil {
			rep.Bad = append(rep.Bad, storage.BadRecord{Mailbox: "shared bodies", Error: err.Error()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: check: %w", err)
	}
	if repair && len(todo) > 0 {
		if err := s.quarantine(ctx, rep, todo); err != nil {
			return rep, fmt.Errorf("storage: check: repair: %w", err)
		}
	}
	return rep, nil
}

// checkUser reads every record of one user, appending what it cannot
// decode to rep and returning the messages repair can move away.
func checkUser(tx *bolt.Tx, addr string, rep *storage.CheckReport) []badMessage {
	rep.Checked++
	u, err := openUser(tx, addr)
	if err != nil {
		rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Error: err.Error()})
		return nil
	}
	if _, err := u.record(); err != nil {
		rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Error: "user record: " + err.Error()})
	}
	var todo []badMessage
	c := u.boxes.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil || len(k) != 8 {
			continue
		}
		id := beUint64(k)
		rep.Checked++
		x, err := u.box(id)
		if err != nil {
			rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Mailbox: fmt.Sprintf("#%d", id), Error: err.Error()})
			continue
		}
		mb, err := x.buckets()
		if err != nil {
			rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Mailbox: x.rec.Name, Error: err.Error()})
			continue
		}
		mc := mb.meta.Cursor()
		for key, meta := mc.First(); key != nil; key, meta = mc.Next() {
			rep.Checked++
			if len(key) != 4 {
				rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Mailbox: x.rec.Name, Error: fmt.Sprintf("message key %x: %v", key, errCorrupt)})
				continue
			}
			uid := binary.BigEndian.Uint32(key)
			if err := checkMessage(x, mb, key, meta); err != nil {
				todo = append(todo, badMessage{user: addr, box: id, uid: uid, index: len(rep.Bad)})
				rep.Bad = append(rep.Bad, storage.BadRecord{User: addr, Mailbox: x.rec.Name, UID: uid, Error: err.Error()})
			}
		}
	}
	return todo
}

// checkMessage decodes what FETCH would decode for one message.
func checkMessage(x *boxTx, mb msgBuckets, key, meta []byte) error {
	m, err := decodeMeta(meta)
	if err != nil {
		return fmt.Errorf("flags and size: %w", err)
	}
	if _, _, err := decodeParsed(mb.parsed.Get(key), true, true); err != nil {
		return fmt.Errorf("envelope and body structure: %w", err)
	}
	// A dangling or wrong-sized shared body reference is caught here.
	b, err := x.stored(mb, key)
	if err != nil {
		return err
	}
	if b.size() != m.size {
		return fmt.Errorf("%d bytes stored, %d recorded: %w", b.size(), m.size, errCorrupt)
	}
	return nil
}

// quarantine moves the bad messages out of their mailboxes in one write.
// Each is checked again inside the transaction, so a message that was
// expunged or rewritten since the read is left alone.
func (s *boltStore) quarantine(ctx context.Context, rep *storage.CheckReport, todo []badMessage) error {
	moved, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) ([]int, error) {
		var moved []int
		q, err := tx.CreateBucketIfNotExists(bucketQuarantine)
		if err != nil {
			return nil, err
		}
		for _, bm := range todo {
			ok, err := quarantineOne(tx, q, bm, rep.Bad[bm.index].Error, ev)
			if err != nil {
				return nil, fmt.Errorf("%s mailbox %d UID %d: %w", bm.user, bm.box, bm.uid, err)
			}
			if ok {
				moved = append(moved, bm.index)
			}
		}
		return moved, nil
	})
	if err != nil {
		return err
	}
	for _, i := range moved {
		rep.Bad[i].Quarantined = true
	}
	return nil
}

func quarantineOne(tx *bolt.Tx, q *bolt.Bucket, bm badMessage, reason string, ev *eventList) (bool, error) {
	u, err := openUser(tx, bm.user)
	if err != nil {
		return false, err
	}
	x, err := u.box(bm.box)
	if err != nil {
		return false, err
	}
	mb, err := x.buckets()
	if err != nil {
		return false, err
	}
	key := be32(bm.uid)
	meta := mb.meta.Get(key)
	if meta == nil || checkMessage(x, mb, key, meta) == nil {
		return false, nil
	}
	rec := quarantinedRecord{
		Mailbox: x.rec.Name, MailboxID: bm.box, UID: bm.uid, Error: reason, Quarantined: time.Now().UTC(),
		Meta: clone(meta), Parsed: clone(mb.parsed.Get(key)), Body: clone(mb.body.Get(key)),
	}
	if b, err := x.stored(mb, key); err == nil {
		rec.Body = b.bytes() // with its shared body
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	qu, err := q.CreateBucketIfNotExists([]byte(bm.user))
	if err != nil {
		return false, err
	}
	qkey := append(be64(bm.box), key...)
	if err := qu.Put(qkey, data); err != nil {
		return false, err
	}
	if m, err := decodeMeta(meta); err == nil {
		// Flags, size and date are known: leave as an expunge does.
		if err := x.remove(mb, imap.UID(bm.uid), m, ev); err != nil {
			return false, err
		}
		return true, x.save()
	}
	// Without its meta record the message's size, \Seen and date are
	// unknown: forget it in the indexes by key, then recount the mailbox.
	if err := x.untrack(imap.UID(bm.uid), storage.TrackDeleted, nil, ev); err != nil {
		return false, err
	}
	if err := dropUnreadIndex(tx, bm); err != nil {
		return false, err
	}
	for _, b := range []*bolt.Bucket{mb.meta, mb.parsed, mb.body} {
		if err := b.Delete(key); err != nil {
			return false, err
		}
	}
	if err := x.releaseBody(key); err != nil {
		return false, err
	}
	if err := x.recount(mb); err != nil {
		return false, err
	}
	// Its change index entry is unknown without the record; Changes skips
	// entries without a message, and the tombstone tells readers it went.
	modseq, err := x.recordExpunge(imap.UID(bm.uid), 0)
	if err != nil {
		return false, err
	}
	ev.Add(storage.Event{Kind: storage.EventExpunge, User: x.u.addr, MailboxID: x.id, UID: imap.UID(bm.uid), ModSeq: modseq})
	return true, x.save()
}

// dropUnreadIndex removes the unread-lifetime index entry of one message
// whose date is unknown, by its key's suffix <box><uid><address>.
func dropUnreadIndex(tx *bolt.Tx, bm badMessage) error {
	b := tx.Bucket(bucketUnread)
	if b == nil {
		return nil
	}
	suffix := string(append(append(be64(bm.box), be32(bm.uid)...), bm.user...))
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if strings.HasSuffix(string(k), suffix) {
			keys = append(keys, clone(k))
		}
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// recount sets the mailbox counters from the meta records that remain.
func (x *boxTx) recount(mb msgBuckets) error {
	x.rec.Messages, x.rec.Unseen, x.rec.Size = 0, 0, 0
	c := mb.meta.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		m, err := decodeMeta(v)
		if err != nil {
			continue // another bad message of this repair, about to go
		}
		x.rec.Messages++
		x.rec.Size += m.size
		if m.flags.sys&flagSeen == 0 {
			x.rec.Unseen++
		}
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
