package queue

// Retention: sent and failed entries are removed, with their bodies,
// Options.Retention after they settle (their last attempt). The sweep runs
// at Start and every RetentionInterval; each store call removes a bounded
// batch, so a large backlog is worked through in many small transactions
// between the users' writes. Waiting (outbox) and held entries are never
// removed. Of several nodes sharing a store only the one leading the
// cluster's housekeeping (storage.Leading) sweeps; two at once during a
// hand-over is harmless: an entry is removed once.

import (
	"context"
	"time"

	"github.com/pochta/pochta/storage"
)

// DefaultRetentionInterval is the pause between retention sweeps.
const DefaultRetentionInterval = time.Hour

// housekeep runs the retention sweep until ctx ends.
func (q *Queue) housekeep(ctx context.Context) {
	for {
		if !storage.Leading(ctx, q.store, storage.JobRetention) {
			// Another node sweeps; ask again next round.
		} else if _, err := q.removeSettled(ctx); err != nil && ctx.Err() == nil {
			q.log.Error("queue: removing settled entries failed", "err", err)
		}
		t := time.NewTimer(q.opt().RetentionInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// removeSettled runs one sweep and returns how many entries it removed.
// With Retention 0 it does nothing.
func (q *Queue) removeSettled(ctx context.Context) (int, error) {
	retention := q.opt().Retention
	if retention <= 0 {
		return 0, nil
	}
	cutoff := q.now().Add(-retention)
	total := 0
	after := uint64(0)
	for {
		res, err := q.store.RemoveSettledQueueEntries(ctx, cutoff, after)
		if err != nil {
			return total, err
		}
		// Counted per batch: a failure later leaves these counted.
		q.opt().Metrics.QueueEntriesRemoved(storage.QueueSent, res.Sent)
		q.opt().Metrics.QueueEntriesRemoved(storage.QueueFailed, res.Failed)
		total += res.Sent + res.Failed
		if res.Next == 0 {
			break
		}
		after = res.Next
	}
	if total > 0 {
		q.log.Info("queue: removed settled entries past their retention", "entries", total, "retention", retention, "settled_before", cutoff)
	}
	return total, nil
}
