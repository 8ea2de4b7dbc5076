package boltstore

// The outbound queue's persistent half. The queue package owns the policy
// (when to retry, what counts as final, which notice to send); this file
// owns the records and keeps them consistent: every change of an entry goes
// through saveEntry, which maintains the due index, the counts by status and
// the read-tracking state of the recipients in the same transaction.
//
// Layout, inside the top-level "queue" bucket:
//
//	"entries"/<id>           QueueEntry (JSON, without the body); the bucket
//	                         sequence issues IDs
//	"bodies"/<id>            the message as relayed (Bcc removed)
//	"due"/<time><id>         entries waiting (outbox: next attempt, or the
//	                         end of its lease if later; held: held_until),
//	                         so finding what is due reads only what is due;
//	                         time is Unix nanoseconds
//	"counts"/<status>        number of entries with that status
//	"daily"/<day>"|system"   messages counted toward the day's limits
//	"daily"/<day>"|user|"<address>
//	"alerted"/<day>"|system" a daily-limit alert went out that day
//	"alerted"/<day>"|user|"<address>
//	"state"/"relay"          the relay's health as last recorded ("" = up)
//	"index"/…                entries by owner, status and source, for paged
//	                         listing (layout in queuepage.go)
//
// Days are "2006-01-02" in the limits' time zone, chosen by the caller.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketQueue     = []byte("queue")
	bucketQEntries  = []byte("entries")
	bucketQBodies   = []byte("bodies")
	bucketQDue      = []byte("due")
	bucketQCounts   = []byte("counts")
	bucketQDaily    = []byte("daily")
	bucketQAlerted  = []byte("alerted")
	bucketQState    = []byte("state")
	keyRelayState   = []byte("relay")
	queueSubBuckets = [][]byte{bucketQEntries, bucketQBodies, bucketQDue, bucketQCounts, bucketQDaily, bucketQAlerted, bucketQState}
)

// queueTx is the queue's buckets inside a write transaction.
type queueTx struct {
	tx                                                  *bolt.Tx
	entries, bodies, due, counts, daily, alerted, state *bolt.Bucket
}

// openQueue returns the queue's buckets, creating them on first use.
func openQueue(tx *bolt.Tx) (*queueTx, error) {
	root, err := tx.CreateBucketIfNotExists(bucketQueue)
	if err != nil {
		return nil, err
	}
	bs := make([]*bolt.Bucket, len(queueSubBuckets))
	for i, name := range queueSubBuckets {
		if bs[i], err = root.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return &queueTx{tx: tx, entries: bs[0], bodies: bs[1], due: bs[2], counts: bs[3], daily: bs[4], alerted: bs[5], state: bs[6]}, nil
}

// queueBucket returns a sub-bucket for reading, nil before the queue's
// first write.
func queueBucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	root := tx.Bucket(bucketQueue)
	if root == nil {
		return nil
	}
	return root.Bucket(name)
}

func dueKey(e *storage.QueueEntry) []byte {
	var t time.Time
	switch e.Status {
	case storage.QueueOutbox:
		t = e.PickableAt()
	case storage.QueueHeld:
		t = e.HeldUntil
	default:
		return nil
	}
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(max(t.UnixNano(), 0)))
	binary.BigEndian.PutUint64(k[8:], e.ID)
	return k
}

func decodeEntry(id uint64, v []byte) (*storage.QueueEntry, error) {
	var e storage.QueueEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("queue entry %d: %w: %v", id, errCorrupt, err)
	}
	// JSON users get [] rather than null for empty address lists.
	for _, l := range []*[]string{&e.To, &e.Cc, &e.Bcc} {
		if *l == nil {
			*l = []string{}
		}
	}
	return &e, nil
}

func (q *queueTx) count(status string, delta int64) error {
	n := int64(0)
	if v := q.counts.Get([]byte(status)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return q.counts.Put([]byte(status), be64(uint64(max(n+delta, 0))))
}

// saveEntry writes e (old is the stored state, nil for a new entry) and
// keeps the due index, the counts by status and read tracking in step.
func (q *queueTx) saveEntry(old, e *storage.QueueEntry, ev *eventList) error {
	e.Rev++
	body := e.Body
	e.Body = ""
	v, err := json.Marshal(e)
	e.Body = body
	if err != nil {
		return fmt.Errorf("queue entry %d: %w", e.ID, err)
	}
	if err := q.entries.Put(be64(e.ID), v); err != nil {
		return err
	}
	var oldKey []byte
	oldStatus := ""
	if old != nil {
		oldKey, oldStatus = dueKey(old), old.Status
	}
	if newKey := dueKey(e); !bytes.Equal(oldKey, newKey) {
		if oldKey != nil {
			if err := q.due.Delete(oldKey); err != nil {
				return err
			}
		}
		if newKey != nil {
			if err := q.due.Put(newKey, nil); err != nil {
				return err
			}
		}
	}
	if oldStatus != e.Status {
		if oldStatus != "" {
			if err := q.count(oldStatus, -1); err != nil {
				return err
			}
		}
		if err := q.count(e.Status, 1); err != nil {
			return err
		}
	}
	if err := q.reindex(old, e); err != nil {
		return err
	}
	return q.track(old, e, ev)
}

// track reports recipients whose state changed to read tracking.
func (q *queueTx) track(old, e *storage.QueueEntry, ev *eventList) error {
	return storage.QueueRecipientsChanged(records(q.tx), old, e, ev)
}

// remove deletes an entry, its body and its places in the indexes (the
// rules have reported its pending recipients to read tracking).
func (q *queueTx) remove(e *storage.QueueEntry) error {
	if k := dueKey(e); k != nil {
		if err := q.due.Delete(k); err != nil {
			return err
		}
	}
	if err := q.count(e.Status, -1); err != nil {
		return err
	}
	if err := q.reindex(e, nil); err != nil {
		return err
	}
	if err := q.dropBody(e.ID); err != nil {
		return err
	}
	return q.entries.Delete(be64(e.ID))
}

func dailyKey(day, user string) []byte {
	if user == "" {
		return []byte(day + "|system")
	}
	return []byte(day + "|user|" + strings.ToLower(user))
}

func getCount(b *bolt.Bucket, k []byte) int {
	if b == nil {
		return 0
	}
	if v := b.Get(k); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v))
	}
	return 0
}

func addCount(b *bolt.Bucket, k []byte, delta int) error {
	n := getCount(b, k) + delta
	if n <= 0 {
		return b.Delete(k)
	}
	return b.Put(k, be64(uint64(n)))
}

// pruneDays drops the day-keyed records of days before keep ("|" sorts
// after every digit, so a day's keys sort after the day itself).
func pruneDays(b *bolt.Bucket, keep string) error {
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && string(k) < keep; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// preparedNotice is a Notice parsed before its transaction.
type preparedNotice struct {
	rcpts []string
	msg   *prepared
}

func prepareNotices(ns []*storage.Notice, now time.Time) ([]preparedNotice, int, error) {
	var out []preparedNotice
	size := 0
	for _, n := range ns {
		if n == nil || len(n.Recipients) == 0 {
			continue
		}
		p, err := prepare(n.Message, now)
		if err != nil {
			return nil, 0, fmt.Errorf("notice: %w", err)
		}
		var rcpts []string
		for _, r := range n.Recipients {
			r = strings.ToLower(r)
			if !slices.Contains(rcpts, r) {
				rcpts = append(rcpts, r)
			}
		}
		out = append(out, preparedNotice{rcpts: rcpts, msg: p})
		size += len(p.raw) * len(rcpts)
	}
	return out, size, nil
}

// deliverNotices appends notices to their recipients' INBOXes.
func deliverNotices(tx *bolt.Tx, ns []preparedNotice, ev *eventList) error {
	for _, n := range ns {
		for _, r := range n.rcpts {
			u, err := openUser(tx, r)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			x, err := u.boxByName(storage.Inbox)
			if err != nil {
				return err
			}
			if _, err := x.appendPrepared(n.msg, ev); err != nil {
				return err
			}
			if err := x.save(); err != nil {
				return err
			}
		}
	}
	return nil
}

// enqueue writes the queue entry for a delivery's external recipients,
// inside the delivery's transaction, and returns its ID. What the entry
// says (recipients, the header summary, the source) is the rules'
// (storage.NewQueueEntry); trackingID links it to the sender's
// read-tracking record (0: none), so the relay's outcome is reported there.
func enqueue(tx *bolt.Tx, d *storage.Delivery, body *prepared, trackingID uint64, now time.Time, ev *eventList) (uint64, error) {
	// The Sent copy still has Bcc; the relay copy does not.
	hdr := body.raw
	if d.SentCopy != nil {
		hdr = d.SentCopy.Raw
	}
	e, err := storage.NewQueueEntry(d, hdr, int64(len(body.raw)), trackingID, now)
	if err != nil {
		return 0, err
	}
	q, err := openQueue(tx)
	if err != nil {
		return 0, err
	}
	if e.ID, err = q.entries.NextSequence(); err != nil {
		return 0, err
	}
	if err := q.putBody(e.ID, body); err != nil {
		return 0, err
	}
	if err := q.saveEntry(nil, e, ev); err != nil {
		return 0, err
	}
	ev.Add(storage.Event{Kind: storage.EventQueued, QueueID: e.ID})
	return e.ID, nil
}

// QueueEntries implements QueueStore.
func (s *boltStore) QueueEntries(ctx context.Context, f storage.QueueFilter) ([]storage.QueueEntry, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("storage: queue entries: %w", err)
	}
	out := []storage.QueueEntry{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := queueBucket(tx, bucketQEntries)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			e, err := decodeEntry(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			if f.Match(e) {
				out = append(out, *e)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("storage: queue entries: %w", err)
	}
	return out, nil
}

func loadEntry(tx *bolt.Tx, id uint64, withBody bool) (*storage.QueueEntry, error) {
	b := queueBucket(tx, bucketQEntries)
	var v []byte
	if b != nil {
		v = b.Get(be64(id))
	}
	if v == nil {
		return nil, fmt.Errorf("queue entry %d: %w", id, storage.ErrNotFound)
	}
	e, err := decodeEntry(id, v)
	if err != nil {
		return nil, err
	}
	if withBody {
		m, err := queueStored(tx, id)
		if err != nil {
			return nil, err
		}
		e.Body = string(m.bytes())
	}
	return e, nil
}

// QueueEntry implements QueueStore.
func (s *boltStore) QueueEntry(ctx context.Context, id uint64) (*storage.QueueEntry, error) {
	var e *storage.QueueEntry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		e, err = loadEntry(tx, id, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return e, nil
}

// QueueCounts implements QueueStore.
func (s *boltStore) QueueCounts(ctx context.Context) (storage.QueueCounts, error) {
	var c storage.QueueCounts
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := queueBucket(tx, bucketQCounts)
		c = storage.QueueCounts{
			Outbox: getCount(b, []byte(storage.QueueOutbox)),
			Held:   getCount(b, []byte(storage.QueueHeld)),
			Sent:   getCount(b, []byte(storage.QueueSent)),
			Failed: getCount(b, []byte(storage.QueueFailed)),
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("storage: queue counts: %w", err)
	}
	return c, nil
}

// DueQueueEntries implements QueueStore.
func (s *boltStore) DueQueueEntries(ctx context.Context, now time.Time, max int) ([]storage.QueueEntry, time.Time, error) {
	var out []storage.QueueEntry
	var next time.Time
	limit := uint64(now.UnixNano())
	err := s.view(ctx, func(tx *bolt.Tx) error {
		due := queueBucket(tx, bucketQDue)
		if due == nil {
			return nil
		}
		c := due.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return fmt.Errorf("queue index key %x: %w", k, errCorrupt)
			}
			at := binary.BigEndian.Uint64(k)
			if at > limit {
				next = time.Unix(0, int64(at))
				return nil
			}
			if len(out) >= max {
				// More are due; the caller comes back when it has room.
				return nil
			}
			e, err := loadEntry(tx, binary.BigEndian.Uint64(k[8:]), false)
			if err != nil {
				return err
			}
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("storage: due queue entries: %w", err)
	}
	return out, next, nil
}
