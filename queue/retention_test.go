package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pochta/pochta/internal/testclock"
	"github.com/pochta/pochta/metrics"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/storagetest"
)

const day = 24 * time.Hour

// settledEnv has one sent and one failed entry settled at the clock's
// start, and one still waiting (its recipient answers 451 forever).
func settledEnv(t *testing.T, mutate func(*Options)) (e *env, clock *testclock.Clock, sent, failed, waiting uint64) {
	clock = testclock.New(time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC))
	e = newEnv(t, func(o *Options) {
		o.Now, o.MaxAttempts = clock.Now, 1000
		if mutate != nil {
			mutate(o)
		}
	})
	const erin = "erin@remote.test"
	e.relay.set(func(r *testRelay) {
		r.rcptReply[dave] = always(reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user"))
		r.rcptReply[erin] = always(reply(451, smtp.EnhancedCode{4, 3, 0}, "try later"))
	})
	sent = e.send(alice, []string{carol}, "to be sent")
	failed = e.send(alice, []string{dave}, "to fail")
	waiting = e.send(alice, []string{erin}, "still waiting")
	e.start()
	e.waitEntry(sent, "sent", statusIs(storage.QueueSent))
	e.waitEntry(failed, "failed", statusIs(storage.QueueFailed))
	e.waitEntry(waiting, "tried", func(en *storage.QueueEntry) bool { return en.Attempts == 1 })
	return e, clock, sent, failed, waiting
}

func (e *env) gone(id uint64) bool {
	e.t.Helper()
	_, err := e.store.QueueEntry(context.Background(), id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		e.t.Fatal(err)
	}
	return errors.Is(err, storage.ErrNotFound)
}

func TestSettledEntriesAreRemovedAfterTheRetentionPeriod(t *testing.T) {
	mreg := prometheus.NewRegistry()
	counts := metrics.New(mreg, "")
	e, clock, sent, failed, waiting := settledEnv(t, func(o *Options) {
		o.Retention, o.RetentionInterval, o.Metrics = 30*day, 10*time.Millisecond, counts.Queue()
	})
	removed := func(status string) float64 {
		saved := e.reg
		e.reg = mreg
		defer func() { e.reg = saved }()
		return e.metric("pochta_queue_entries_removed_total", "status", status)
	}

	clock.Advance(29 * day)
	if n, err := e.q.removeSettled(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep 29 days after: removed %d (%v), want none", n, err)
	}
	for _, id := range []uint64{sent, failed, waiting} {
		if e.gone(id) {
			t.Fatalf("entry %d removed 29 days after it settled, with a retention of 30", id)
		}
	}

	// The periodic sweep finds them once they are 31 days old.
	clock.Advance(2 * day)
	waitFor(t, "the sent and failed entries removed", func() bool { return e.gone(sent) && e.gone(failed) }, nil)
	if e.gone(waiting) {
		t.Errorf("a waiting entry was removed")
	}
	// Counted once the sweep's batch returns, just after its commit.
	waitFor(t, "removed{sent} and removed{failed} at 1", func() bool { return removed("sent") == 1 && removed("failed") == 1 },
		func() string { return fmt.Sprintf("sent %v failed %v", removed("sent"), removed("failed")) })
	if c, err := e.store.QueueCounts(context.Background()); err != nil || c != (storage.QueueCounts{Outbox: 1}) {
		t.Errorf("counts %+v (%v), want the waiting entry only", c, err)
	}
	// Read tracking keeps the outcome of what was removed.
	tracked, err := e.store.SentStatus(context.Background(), alice)
	if err != nil || len(tracked) != 3 {
		t.Fatalf("sent status: %d records (%v), want 3", len(tracked), err)
	}
	for _, m := range tracked {
		want := map[string]string{"to be sent": storage.TrackRelayed, "to fail": storage.TrackFailed, "still waiting": storage.TrackQueued}[m.Subject]
		if got := m.Recipients[0].State; got != want {
			t.Errorf("%q: recipient %s, want %s", m.Subject, got, want)
		}
	}
}

func TestTheStartUpSweepRemovesWhatExpiredWhileStopped(t *testing.T) {
	e, clock, sent, failed, waiting := settledEnv(t, func(o *Options) { o.Retention = 30 * day })
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * day)
	e.restart() // the interval is an hour: only the start-up sweep runs
	waitFor(t, "the start-up sweep", func() bool { return e.gone(sent) && e.gone(failed) }, nil)
	if e.gone(waiting) {
		t.Errorf("a waiting entry was removed")
	}
}

func TestARetentionOfZeroKeepsEverything(t *testing.T) {
	e, clock, sent, failed, waiting := settledEnv(t, func(o *Options) { o.Retention = 0 })
	clock.Advance(400 * day)
	if n, err := e.q.removeSettled(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep: removed %d (%v), want none", n, err)
	}
	for _, id := range []uint64{sent, failed, waiting} {
		if e.gone(id) || e.entry(id).Body == "" {
			t.Errorf("entry %d (or its body) removed with a retention of 0", id)
		}
	}
}

// Of nodes sharing a store, one that does not lead the cluster's
// housekeeping leaves the retention sweep to the leader.
func TestOnlyTheLeadingNodeRemovesSettledEntries(t *testing.T) {
	e, clock, sent, failed, _ := settledEnv(t, func(o *Options) {
		o.Retention, o.RetentionInterval = 30*day, 20*time.Millisecond
	})
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * day)
	f := storagetest.NewFollower(e.store)
	e.store = f
	e.start()
	for range 3 {
		select {
		case <-f.Asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the queue never asked whether it leads")
		}
	}
	if e.gone(sent) || e.gone(failed) {
		t.Fatal("a node that does not lead removed settled entries")
	}
	f.Lead.Store(true)
	waitFor(t, "the leader's sweep", func() bool { return e.gone(sent) && e.gone(failed) }, nil)
}
