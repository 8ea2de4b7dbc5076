package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/testclock"
	"github.com/pochta/pochta/storage"
)

// claimAs claims id the way another node's queue would.
func (e *env) claimAs(id uint64, node string, now time.Time) *storage.QueueClaimed {
	e.t.Helper()
	res, err := e.store.ClaimQueueEntry(context.Background(), storage.QueueClaim{
		ID: id, Now: now, Day: now.Format(time.DateOnly), HoldUntil: now.Add(24 * time.Hour),
		Owner: node, LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		e.t.Fatalf("claim %d as %s: %v", id, node, err)
	}
	return res
}

// relayedSubjects counts the messages the relay accepted, by subject.
func (e *env) relayedSubjects() map[string]int {
	out := map[string]int{}
	for _, tx := range e.relay.delivered() {
		for _, line := range strings.Split(string(tx.data), "\r\n") {
			if s, ok := strings.CutPrefix(line, "Subject: "); ok {
				out[s]++
			}
		}
	}
	return out
}

func TestACrashedAttemptIsRelayedExactlyOnceAfterItsLeaseRunsOut(t *testing.T) {
	clock := testclock.New(time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(o *Options) { o.Now, o.Node, o.Lease = clock.Now, "node-b", time.Minute })
	crashed := e.send(alice, []string{carol}, "cut off")
	// node-a claimed it and died before recording anything.
	if res := e.claimAs(crashed, "node-a", clock.Now()); res.Entry == nil {
		t.Fatalf("node-a's claim: %+v", res)
	}
	e.start()
	later := e.send(alice, []string{dave}, "queued later")
	e.waitEntry(later, "sent", statusIs(storage.QueueSent))
	// node-b has been through the queue; node-a's lease still holds.
	if got := e.relayedSubjects()["cut off"]; got != 0 {
		t.Fatalf("the entry leased to node-a was relayed %d times during its lease", got)
	}
	if en := e.entry(crashed); en.Status != storage.QueueOutbox || en.LeaseOwner != "node-a" {
		t.Fatalf("leased entry: %s leased to %q", en.Status, en.LeaseOwner)
	}

	clock.Advance(time.Minute + time.Second)
	e.q.Wake()
	en := e.waitEntry(crashed, "sent by node-b", statusIs(storage.QueueSent))
	if en.LeaseOwner != "" || en.Attempts != 1 {
		t.Errorf("entry after the takeover: leased to %q, %d attempts", en.LeaseOwner, en.Attempts)
	}
	e.q.Wake()
	e.restart()
	e.waitEntry(later, "still sent", statusIs(storage.QueueSent))
	if got := e.relayedSubjects(); got["cut off"] != 1 || got["queued later"] != 1 {
		t.Errorf("relay got %v, want each message once", got)
	}
}

func TestARestartTakesBackItsOwnCutOffAttemptsAtOnce(t *testing.T) {
	clock := testclock.New(time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(o *Options) { o.Now, o.Node, o.Lease = clock.Now, "node-a", time.Minute })
	mine := e.send(alice, []string{carol}, "mine")
	theirs := e.send(alice, []string{dave}, "theirs")
	// What kill -9 during two attempts leaves: this node's lease, and
	// another node's.
	e.claimAs(mine, "node-a", clock.Now())
	e.claimAs(theirs, "node-c", clock.Now())
	e.start()
	// No clock moves: the lease of this node's previous run ends at start.
	e.waitEntry(mine, "sent", statusIs(storage.QueueSent))
	if en := e.entry(theirs); en.Status != storage.QueueOutbox || en.LeaseOwner != "node-c" {
		t.Errorf("node-c's entry: %s leased to %q; want left alone until its lease runs out", en.Status, en.LeaseOwner)
	}
	if got := e.relayedSubjects(); got["mine"] != 1 || got["theirs"] != 0 {
		t.Errorf("relay got %v", got)
	}
}

func TestRenewalsKeepTheLeaseThroughASlowTransfer(t *testing.T) {
	clock := testclock.New(time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(o *Options) {
		o.Now, o.Node, o.Lease, o.LeaseRenew = clock.Now, "node-a", time.Minute, 5*time.Millisecond
		o.DataTimeout = 30 * time.Second
	})
	gate := make(chan struct{})
	e.relay.set(func(r *testRelay) { r.dataGate = gate })
	id := e.send(alice, []string{carol}, "slow")
	e.start()
	waitFor(t, "the relay receiving DATA", func() bool { return e.relay.dataCount() == 1 }, nil)
	// Four half-leases: two whole leases pass during the transfer.
	for i := range 4 {
		clock.Advance(30 * time.Second)
		want := clock.Now().Add(time.Minute)
		e.waitEntry(id, "lease renewed", func(en *storage.QueueEntry) bool { return en.LeaseUntil.Equal(want) })
		if res := e.claimAs(id, "node-b", clock.Now()); res.Entry != nil || res.LeasedBy != "node-a" {
			t.Fatalf("after %d half-leases node-b's claim got %+v; want it refused, leased by node-a", i+1, res)
		}
	}
	close(gate)
	en := e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	if en.LeaseOwner != "" || en.Attempts != 1 {
		t.Errorf("sent entry leased to %q after %d attempts", en.LeaseOwner, en.Attempts)
	}
	if got := e.relayedSubjects()["slow"]; got != 1 {
		t.Errorf("relayed %d times, want once", got)
	}
}

func TestAnAttemptWhoseLeaseIsLostIsCutOff(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.LeaseRenew = 5 * time.Millisecond
		o.DataTimeout = time.Minute // only the lost lease can end the attempt in time
	})
	gate := make(chan struct{})
	e.relay.set(func(r *testRelay) { r.dataGate = gate })
	id := e.send(alice, []string{carol}, "deleted while sending")
	e.start()
	waitFor(t, "the relay receiving DATA", func() bool { return e.relay.dataCount() == 1 }, nil)
	if err := e.store.DeleteQueueEntry(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the attempt to stop", func() bool {
		e.q.mu.Lock()
		defer e.q.mu.Unlock()
		return len(e.q.inflight) == 0
	}, nil)
	close(gate)
	// The attempt was gone before the relay could accept: nothing relayed.
	if got := e.relayedSubjects(); len(got) != 0 {
		t.Errorf("relay got %v after the entry was deleted", got)
	}
	if _, err := e.store.QueueEntry(context.Background(), id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted entry: %v", err)
	}
}
