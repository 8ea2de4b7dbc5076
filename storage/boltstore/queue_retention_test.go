package boltstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// settleEntry claims an entry and records a final attempt at settled: every
// recipient sent (status sent) or refused (failed).
func settleEntry(t *testing.T, s storage.Store, id uint64, status string, settled time.Time) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	res, err := s.ClaimQueueEntry(ctx, leaseClaim(id, "node-a", now))
	if err != nil || res.Entry == nil {
		t.Fatalf("claim %d: %+v %v", id, res, err)
	}
	e := res.Entry
	e.Status, e.Attempts, e.LastAttempt, e.NextAttempt = status, 1, settled, time.Time{}
	for i := range e.Recipients {
		if status == storage.QueueSent {
			e.Recipients[i].State = storage.RcptSent
		} else {
			e.Recipients[i].State = storage.RcptFailed
		}
	}
	if status == storage.QueueSent {
		e.Sent, e.SentOn = true, &settled
	}
	if _, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e}); err != nil {
		t.Fatalf("settle %d: %v", id, err)
	}
}

func hasBody(t *testing.T, s *testStore, id uint64) bool {
	t.Helper()
	found := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		found = queueBucket(tx, bucketQBodies).Get(be64(id)) != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// sweepAll walks the whole queue as package queue does.
func sweepAll(t *testing.T, s storage.Store, cutoff time.Time) (sent, failed, calls int) {
	t.Helper()
	after := uint64(0)
	for {
		res, err := s.RemoveSettledQueueEntries(context.Background(), cutoff, after)
		if err != nil {
			t.Fatalf("remove settled: %v", err)
		}
		calls++
		if res.Sent+res.Failed > storage.RetentionBatch {
			t.Fatalf("one call removed %d entries, more than the batch of %d", res.Sent+res.Failed, storage.RetentionBatch)
		}
		sent, failed = sent+res.Sent, failed+res.Failed
		if res.Next == 0 {
			return sent, failed, calls
		}
		after = res.Next
	}
}

func TestSettledEntriesGoWithTheirBodiesAfterRetentionAndTrackingStays(t *testing.T) {
	s, _ := queueStore(t)
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	oldSent := mustDeliver(t, s, queueDelivery("old sent"))
	oldFailed := mustDeliver(t, s, queueDelivery("old failed"))
	recent := mustDeliver(t, s, queueDelivery("recent"))
	waiting := mustDeliver(t, s, queueDelivery("waiting")).QueueID
	settleEntry(t, s, oldSent.QueueID, storage.QueueSent, now.Add(-31*day))
	settleEntry(t, s, oldFailed.QueueID, storage.QueueFailed, now.Add(-31*day))
	settleEntry(t, s, recent.QueueID, storage.QueueSent, now.Add(-29*day))
	before := states(t, s, qAlice, oldSent.TrackingID)

	sent, failed, _ := sweepAll(t, s, now.Add(-30*day))
	if sent != 1 || failed != 1 {
		t.Fatalf("removed %d sent and %d failed, want 1 and 1", sent, failed)
	}
	for _, id := range []uint64{oldSent.QueueID, oldFailed.QueueID} {
		_, err := s.QueueEntry(ctx, id)
		wantErr(t, err, storage.ErrNotFound, "an entry settled 31 days ago")
		if hasBody(t, s, id) {
			t.Errorf("entry %d: its body is still stored", id)
		}
	}
	for _, id := range []uint64{recent.QueueID, waiting} {
		if mustEntry(t, s, id).Body == "" {
			t.Errorf("entry %d lost its body", id)
		}
	}
	if c, _ := s.QueueCounts(ctx); c != (storage.QueueCounts{Outbox: 1, Sent: 1}) {
		t.Errorf("counts after the sweep %+v, want 1 outbox and 1 sent", c)
	}
	// The sender's read tracking still says who got the message, and
	// nothing in the database points at what went.
	if after := states(t, s, qAlice, oldSent.TrackingID); len(after) == 0 || after["X@Remote.test"] != storage.TrackRelayed || len(after) != len(before) {
		t.Errorf("read tracking after the sweep %v, want it unchanged %v", after, before)
	}
	if rep, err := s.Check(ctx, false); err != nil || len(rep.Bad) != 0 {
		t.Errorf("check after the sweep: %+v %v", rep, err)
	}
	if sent, failed, _ := sweepAll(t, s, now.Add(-30*day)); sent+failed != 0 {
		t.Errorf("a second sweep removed %d more", sent+failed)
	}
}

func TestWaitingAndHeldEntriesAreNeverRemoved(t *testing.T) {
	s, _ := queueStore(t)
	ctx := context.Background()
	waiting := mustDeliver(t, s, queueDelivery("waiting")).QueueID
	held := mustDeliver(t, s, queueDelivery("held")).QueueID
	first := mustDeliver(t, s, queueDelivery("first")).QueueID
	now := time.Now()
	// The first of the day counts toward alice's limit of 1; the next is
	// held.
	if res, err := s.ClaimQueueEntry(ctx, leaseClaim(first, "node-a", now)); err != nil || !res.Counted {
		t.Fatalf("claim %+v %v: want counted", res, err)
	}
	c := leaseClaim(held, "node-a", now)
	c.UserLimit = 1
	if res, err := s.ClaimQueueEntry(ctx, c); err != nil || res.Held == "" {
		t.Fatalf("claim %+v %v: want held by the user limit", res, err)
	}
	// A cutoff a year ahead: everything settled would go.
	if sent, failed, _ := sweepAll(t, s, now.Add(365*24*time.Hour)); sent+failed != 0 {
		t.Errorf("removed %d entries, want none", sent+failed)
	}
	if mustEntry(t, s, waiting).Status != storage.QueueOutbox || mustEntry(t, s, held).Status != storage.QueueHeld {
		t.Errorf("waiting or held entry changed")
	}
}

func TestALargeBacklogIsRemovedInBoundedBatches(t *testing.T) {
	s, _ := queueStore(t)
	settled := time.Now().Add(-40 * 24 * time.Hour)
	n := storage.RetentionBatch + 50
	var wg sync.WaitGroup
	ids := make([]uint64, n)
	for i := range n { // concurrent: the writer commits them in groups
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = mustDeliver(t, s, queueDelivery("bulk")).QueueID
			settleEntry(t, s, ids[i], storage.QueueSent, settled)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sent, _, calls := sweepAll(t, s, time.Now())
	if sent != n || calls < 2 {
		t.Errorf("removed %d in %d calls, want %d in more than one", sent, calls, n)
	}
	if c, _ := s.QueueCounts(context.Background()); c != (storage.QueueCounts{}) {
		t.Errorf("counts %+v, want none left", c)
	}
}
