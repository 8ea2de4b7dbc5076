package boltstore

// The queue's bbolt records as RecordTx operations (the rules are in
// storage/queue_rules.go, the layout in queue.go).

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pochta/pochta/storage"
)

// QueueEntry implements RecordTx.
func (t boltTx) QueueEntry(id uint64) (*storage.QueueEntry, error) {
	return loadEntry(t.tx, id, false)
}

// SaveQueueEntry implements RecordTx: the due index, the counts by status,
// the listing index and read tracking follow (queueTx.saveEntry).
func (t boltTx) SaveQueueEntry(old, e *storage.QueueEntry, ev *storage.Events) error {
	q, err := openQueue(t.tx)
	if err != nil {
		return err
	}
	return q.saveEntry(old, e, ev)
}

// QueueEntriesAfter implements RecordTx.
func (t boltTx) QueueEntriesAfter(after uint64, max int) ([]*storage.QueueEntry, error) {
	b := queueBucket(t.tx, bucketQEntries)
	if b == nil {
		return nil, nil
	}
	var es []*storage.QueueEntry
	c := b.Cursor()
	for k, v := c.Seek(be64(after + 1)); k != nil && len(es) < max; k, v = c.Next() {
		if len(k) != 8 {
			return nil, fmt.Errorf("queue entry key %x: %w", k, errCorrupt)
		}
		e, err := decodeEntry(binary.BigEndian.Uint64(k), v)
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, nil
}

// RemoveQueueEntry implements RecordTx.
func (t boltTx) RemoveQueueEntry(e *storage.QueueEntry) error {
	q, err := openQueue(t.tx)
	if err != nil {
		return err
	}
	return q.remove(e)
}

// QueueHeader implements RecordTx.
func (t boltTx) QueueHeader(id uint64) (string, error) {
	m, err := queueStored(t.tx, id)
	if err != nil {
		return "", err
	}
	return string(m.header()), nil
}

// QueueDueBetween implements RecordTx.
func (t boltTx) QueueDueBetween(from, to time.Time) ([]uint64, error) {
	due := queueBucket(t.tx, bucketQDue)
	if due == nil {
		return nil, nil
	}
	var ids []uint64
	c := due.Cursor()
	start := make([]byte, 8)
	binary.BigEndian.PutUint64(start, uint64(max(from.UnixNano(), 0)))
	limit := uint64(max(to.UnixNano(), 0))
	for k, _ := c.Seek(start); k != nil; k, _ = c.Next() {
		if len(k) != 16 {
			return nil, fmt.Errorf("queue index key %x: %w", k, errCorrupt)
		}
		if binary.BigEndian.Uint64(k) > limit {
			break
		}
		ids = append(ids, binary.BigEndian.Uint64(k[8:]))
	}
	return ids, nil
}

// DayCount implements RecordTx.
func (t boltTx) DayCount(day, user string) (int, error) {
	return getCount(queueBucket(t.tx, bucketQDaily), dailyKey(day, user)), nil
}

// AddDayCount implements RecordTx.
func (t boltTx) AddDayCount(day, user string, delta int) error {
	q, err := openQueue(t.tx)
	if err != nil {
		return err
	}
	return addCount(q.daily, dailyKey(day, user), delta)
}

// PruneDayCounts implements RecordTx.
func (t boltTx) PruneDayCounts(keep string) error {
	q, err := openQueue(t.tx)
	if err != nil {
		return err
	}
	return pruneDays(q.daily, keep)
}

// Alerted implements RecordTx.
func (t boltTx) Alerted(day, user string) (bool, error) {
	b := queueBucket(t.tx, bucketQAlerted)
	return b != nil && b.Get(dailyKey(day, user)) != nil, nil
}

// SetAlerted implements RecordTx.
func (t boltTx) SetAlerted(day, user string) error {
	q, err := openQueue(t.tx)
	if err != nil {
		return err
	}
	return q.alerted.Put(dailyKey(day, user), []byte{1})
}

// PruneAlerted implements RecordTx.
func (t boltTx) PruneAlerted(keep string) error {
	q, err := openQueue(t.tx)
	if err != nil {
		return err
	}
	return pruneDays(q.alerted, keep)
}

// RelayState implements RecordTx.
func (t boltTx) RelayState() (string, error) {
	if b := queueBucket(t.tx, bucketQState); b != nil {
		return string(b.Get(keyRelayState)), nil
	}
	return "", nil
}

// SetRelayState implements RecordTx.
func (t boltTx) SetRelayState(state string) error {
	q, err := openQueue(t.tx)
	if err != nil {
		return err
	}
	return q.state.Put(keyRelayState, []byte(state))
}

// DeliverNotices implements RecordTx.
func (t boltTx) DeliverNotices(ns []storage.PreparedNotice, ev *storage.Events) error {
	list := make([]preparedNotice, 0, len(ns))
	for _, n := range ns {
		p, ok := n.Message.(*prepared)
		if !ok {
			return fmt.Errorf("notice prepared by another backend (%T): %w", n.Message, storage.ErrInvalid)
		}
		list = append(list, preparedNotice{rcpts: n.Recipients, msg: p})
	}
	return deliverNotices(t.tx, list, ev)
}

// PrepareNotices implements Records: the messages are parsed and encoded
// before their transaction.
func (s *boltStore) PrepareNotices(ns []*storage.Notice, now time.Time) ([]storage.PreparedNotice, int, error) {
	list, size, err := prepareNotices(ns, now)
	if err != nil {
		return nil, 0, err
	}
	var out []storage.PreparedNotice
	for _, n := range list {
		out = append(out, storage.PreparedNotice{Recipients: n.rcpts, Message: n.msg})
	}
	return out, size, nil
}

// Size implements PreparedMessage.
func (p *prepared) Size() int { return len(p.raw) }
