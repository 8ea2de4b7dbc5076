package storage

// Queue retention: sent and failed entries, with their bodies, are removed
// some time after they settle ([email_queue] retention; package queue
// runs the sweep). Read tracking does not depend on the entry: a
// recipient's outcome was copied into the sender's read-tracking record
// when it settled, and the record lives with the Sent copy, so removing a
// settled entry leaves nothing pointing at it.
//
// These are rules (records.go) over RecordTx. The work is bounded per
// call: one read transaction looks at up to retentionScan entries after a
// given ID, and one write transaction removes at most RetentionBatch of
// them; the caller walks the queue with QueueRemoved.Next. A backlog of any
// size therefore never makes one large transaction, and writes from users
// go in between.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

const (
	retentionScan = 1000
	// RetentionBatch bounds the entries one RemoveSettledQueueEntries
	// removes.
	RetentionBatch = 200
)

// settledAt is when a sent or failed entry settled: its last attempt
// (records without one fall back to when it was sent, then queued).
func settledAt(e *QueueEntry) time.Time {
	switch {
	case !e.LastAttempt.IsZero():
		return e.LastAttempt
	case e.SentOn != nil:
		return *e.SentOn
	}
	return e.Date
}

func settledBefore(e *QueueEntry, cutoff time.Time) bool {
	return (e.Status == QueueSent || e.Status == QueueFailed) && settledAt(e).Before(cutoff)
}

// removeSettledQueueEntries implements QueueStore.RemoveSettledQueueEntries
// over any Records: among the entries with IDs after after (a bounded
// batch of them), it removes the sent and failed ones that settled before
// cutoff, with their bodies.
func removeSettledQueueEntries(ctx context.Context, r Records, cutoff time.Time, after uint64) (*QueueRemoved, error) {
	res := &QueueRemoved{}
	var ids []uint64
	err := r.ViewRecords(ctx, func(tx RecordTx) error {
		ids, res.Next = nil, 0
		es, err := tx.QueueEntriesAfter(after, retentionScan+1)
		if err != nil {
			return err
		}
		for i, e := range es {
			if i == retentionScan || len(ids) == RetentionBatch {
				res.Next = e.ID - 1
				return nil
			}
			if settledBefore(e, cutoff) {
				ids = append(ids, e.ID)
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
	var sent, failed int
	err = r.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		sent, failed = 0, 0
		for _, id := range ids {
			e, err := tx.QueueEntry(id)
			if errors.Is(err, ErrNotFound) {
				continue // deleted meanwhile
			} else if err != nil {
				return err
			}
			// Resent meanwhile, or settled again later: not due.
			if !settledBefore(e, cutoff) {
				continue
			}
			if err := removeQueueEntry(tx, e, ev); err != nil {
				return fmt.Errorf("queue entry %d: %w", id, err)
			}
			if e.Status == QueueSent {
				sent++
			} else {
				failed++
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: remove settled queue entries: %w", err)
	}
	res.Sent, res.Failed = sent, failed
	return res, nil
}

// deleteQueueEntry implements QueueStore.DeleteQueueEntry over any
// Records.
func deleteQueueEntry(ctx context.Context, r Records, id uint64) error {
	err := r.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		e, err := tx.QueueEntry(id)
		if err != nil {
			return err
		}
		return removeQueueEntry(tx, e, ev)
	})
	if err != nil {
		return fmt.Errorf("storage: delete: %w", err)
	}
	return nil
}

// removeQueueEntry removes an entry with its body; recipients still
// pending become failed in read tracking.
func removeQueueEntry(tx RecordTx, e *QueueEntry, ev *Events) error {
	if e.TrackingID != 0 {
		for _, r := range e.Recipients {
			if r.State == RcptPending {
				if err := setExternalState(tx, e.TrackingID, r.Address, TrackFailed, ev); err != nil {
					return fmt.Errorf("queue entry %d: read tracking: %w", e.ID, err)
				}
			}
		}
	}
	return tx.RemoveQueueEntry(e)
}
