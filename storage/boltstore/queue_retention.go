package boltstore

// Queue retention: sent and failed entries, with their bodies, are removed
// some time after they settle ([email_queue] retention; package queue
// runs the sweep). Read tracking does not depend on the entry: a
// recipient's outcome was copied into the sender's read-tracking record
// when it settled, and the record lives with the Sent copy, so removing a
// settled entry leaves nothing pointing at it.
//
// The work is bounded per call: one read transaction looks at up to
// retentionScan entries after a given ID, and one write transaction
// removes at most retentionBatch of them; the caller walks the queue with
// QueueRemoved.Next. A backlog of any size therefore never makes one
// large transaction, and writes from users go in between.

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

const (
	retentionScan  = 1000
	retentionBatch = 200
)

// settledAt is when a sent or failed entry settled: its last attempt
// (records without one fall back to when it was sent, then queued).
func settledAt(e *storage.QueueEntry) time.Time {
	switch {
	case !e.LastAttempt.IsZero():
		return e.LastAttempt
	case e.SentOn != nil:
		return *e.SentOn
	}
	return e.Date
}

func settledBefore(e *storage.QueueEntry, cutoff time.Time) bool {
	return (e.Status == storage.QueueSent || e.Status == storage.QueueFailed) && settledAt(e).Before(cutoff)
}

// RemoveSettledQueueEntries implements QueueStore: among the entries with
// IDs after after (a bounded batch of them), it removes the sent and
// failed ones that settled before cutoff, with their bodies.
func (s *boltStore) RemoveSettledQueueEntries(ctx context.Context, cutoff time.Time, after uint64) (*storage.QueueRemoved, error) {
	res := &storage.QueueRemoved{}
	var ids []uint64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ids, res.Next = nil, 0
		b := queueBucket(tx, bucketQEntries)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		seen := 0
		for k, v := c.Seek(be64(after + 1)); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("queue entry key %x: %w", k, errCorrupt)
			}
			id := binary.BigEndian.Uint64(k)
			if seen == retentionScan || len(ids) == retentionBatch {
				res.Next = id - 1
				return nil
			}
			seen++
			e, err := decodeEntry(id, v)
			if err != nil {
				return err
			}
			if settledBefore(e, cutoff) {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: remove settled queue entries: %w", err)
	}
	if len(ids) == 0 {
		return res, nil
	}
	type counts struct{ sent, failed int }
	n, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (counts, error) {
		var n counts
		q, err := openQueue(tx)
		if err != nil {
			return n, err
		}
		for _, id := range ids {
			v := q.entries.Get(be64(id))
			if v == nil {
				continue // deleted meanwhile
			}
			e, err := decodeEntry(id, v)
			if err != nil {
				return n, err
			}
			// Resent meanwhile, or settled again later: not due.
			if !settledBefore(e, cutoff) {
				continue
			}
			if err := q.remove(e, ev); err != nil {
				return n, fmt.Errorf("queue entry %d: %w", id, err)
			}
			if e.Status == storage.QueueSent {
				n.sent++
			} else {
				n.failed++
			}
		}
		return n, nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: remove settled queue entries: %w", err)
	}
	res.Sent, res.Failed = n.sent, n.failed
	return res, nil
}
