package boltstore

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/testclock"
	"github.com/pochta/pochta/storage"
)

// leaseClaim is a claim by node at now with a lease of one minute.
func leaseClaim(id uint64, node string, now time.Time) storage.QueueClaim {
	return storage.QueueClaim{ID: id, Now: now, Day: "2030-01-01", HoldUntil: now.Add(24 * time.Hour),
		Owner: node, LeaseUntil: now.Add(time.Minute)}
}

func claimAs(t *testing.T, s storage.Store, id uint64, node string, now time.Time) *storage.QueueClaimed {
	t.Helper()
	res, err := s.ClaimQueueEntry(context.Background(), leaseClaim(id, node, now))
	if err != nil {
		t.Fatalf("claim %d as %s: %v", id, node, err)
	}
	return res
}

func TestALeasedEntryIsClaimedByNobodyElseUntilItsLeaseRunsOut(t *testing.T) {
	s, _ := queueStore(t)
	ctx := context.Background()
	clock := testclock.New(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	id := mustDeliver(t, s, queueDelivery("leased")).QueueID

	a := claimAs(t, s, id, "node-a", clock.Now())
	if a.Entry == nil || a.Entry.LeaseOwner != "node-a" || !a.Entry.LeaseUntil.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("first claim %+v: want the entry leased to node-a for a minute", a)
	}
	if e := mustEntry(t, s, id); e.LeaseOwner != "node-a" {
		t.Fatalf("stored entry leased to %q, want node-a (the lease is written with the claim)", e.LeaseOwner)
	}
	clock.Advance(30 * time.Second)
	if b := claimAs(t, s, id, "node-b", clock.Now()); b.Entry != nil || b.LeasedBy != "node-a" {
		t.Fatalf("claim by node-b during node-a's lease: %+v, want nothing, leased by node-a", b)
	}
	if a2 := claimAs(t, s, id, "node-a", clock.Now()); a2.Entry != nil {
		t.Fatalf("second claim by node-a during its own lease took the entry again")
	}
	due, next, err := s.DueQueueEntries(ctx, clock.Now(), 10)
	if err != nil || len(due) != 0 || !next.Equal(a.Entry.LeaseUntil) {
		t.Fatalf("due during the lease: %v next %v (%v), want none until the lease ends at %v", entryIDs(due), next, err, a.Entry.LeaseUntil)
	}

	// node-a died without recording anything: after the lease, node-b
	// takes over, and node-a's late writes are refused.
	clock.Advance(31 * time.Second)
	due, _, err = s.DueQueueEntries(ctx, clock.Now(), 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due after the lease: %v (%v), want the entry", entryIDs(due), err)
	}
	b := claimAs(t, s, id, "node-b", clock.Now())
	if b.Entry == nil || b.Entry.LeaseOwner != "node-b" {
		t.Fatalf("claim by node-b after the lease ran out: %+v", b)
	}
	_, err = s.RenewQueueLease(ctx, storage.LeaseRenewal{ID: id, Owner: "node-a", Rev: a.Entry.Rev, Now: clock.Now(), Until: clock.Now().Add(time.Minute)})
	wantErr(t, err, storage.ErrLeaseLost, "node-a renewing after node-b took over")
	_, err = s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: a.Entry})
	wantErr(t, err, storage.ErrInvalid, "node-a recording its attempt after node-b took over")

	// node-b records its attempt: the lease ends with it.
	upd := b.Entry.Clone()
	upd.Attempts, upd.NextAttempt = 1, clock.Now().Add(5*time.Minute)
	saved, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: upd})
	if err != nil {
		t.Fatal(err)
	}
	if saved.LeaseOwner != "" || !saved.LeaseUntil.IsZero() {
		t.Errorf("recorded attempt still leased to %q until %v", saved.LeaseOwner, saved.LeaseUntil)
	}
	if _, next, _ := s.DueQueueEntries(ctx, clock.Now(), 10); !next.Equal(upd.NextAttempt) {
		t.Errorf("next due %v, want the retry at %v", next, upd.NextAttempt)
	}
}

func TestConcurrentClaimersWithDifferentOwnersNeverBothWin(t *testing.T) {
	s, _ := queueStore(t)
	var ids []uint64
	for range 20 {
		ids = append(ids, mustDeliver(t, s, queueDelivery("race")).QueueID)
	}
	now := time.Now().Add(time.Second) // every entry is due
	for _, id := range ids {
		var wg sync.WaitGroup
		won := make([]bool, 2)
		for i, node := range []string{"node-a", "node-b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := s.ClaimQueueEntry(context.Background(), leaseClaim(id, node, now))
				if err != nil {
					t.Errorf("claim %d as %s: %v", id, node, err)
					return
				}
				won[i] = res.Entry != nil
			}()
		}
		wg.Wait()
		if won[0] == won[1] {
			t.Fatalf("entry %d: node-a won %v, node-b won %v; want exactly one", id, won[0], won[1])
		}
	}
}

func TestRenewalKeepsTheLeaseAndARestartReleasesOnlyItsOwnLeases(t *testing.T) {
	s, path := queueStore(t)
	ctx := context.Background()
	clock := testclock.New(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	mine := mustDeliver(t, s, queueDelivery("mine")).QueueID
	theirs := mustDeliver(t, s, queueDelivery("theirs")).QueueID
	a := claimAs(t, s, mine, "node-a", clock.Now())
	clock.Advance(50 * time.Second)
	claimAs(t, s, theirs, "node-c", clock.Now())
	renewed, err := s.RenewQueueLease(ctx, storage.LeaseRenewal{ID: mine, Owner: "node-a", Rev: a.Entry.Rev, Now: clock.Now(), Until: clock.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * time.Second) // past the first lease, inside the renewed one
	if b := claimAs(t, s, mine, "node-b", clock.Now()); b.Entry != nil {
		t.Fatalf("node-b took an entry whose lease node-a renewed")
	}
	// A stale Rev (the claim's, not the renewal's) is refused.
	_, err = s.RenewQueueLease(ctx, storage.LeaseRenewal{ID: mine, Owner: "node-a", Rev: a.Entry.Rev, Now: clock.Now(), Until: clock.Now().Add(time.Minute)})
	wantErr(t, err, storage.ErrLeaseLost, "renewal with the claim's Rev after a renewal")

	// node-a restarts: its own lease ends at once, node-c's does not.
	s = reopen(t, s, path)
	n, err := s.ReleaseQueueLeases(ctx, "node-a", clock.Now(), clock.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("release node-a's leases: %d (%v), want 1", n, err)
	}
	due, _, err := s.DueQueueEntries(ctx, clock.Now(), 10)
	if err != nil || len(due) != 1 || due[0].ID != mine {
		t.Fatalf("due after the release: %v (%v), want only %d", entryIDs(due), err, mine)
	}
	if r := claimAs(t, s, mine, "node-a", clock.Now()); r.Entry == nil || r.Entry.Rev <= renewed.Rev {
		t.Fatalf("node-a's claim after its restart: %+v", r)
	}
	if r := claimAs(t, s, theirs, "node-a", clock.Now()); r.Entry != nil || r.LeasedBy != "node-c" {
		t.Fatalf("node-a took node-c's leased entry: %+v", r)
	}
}

func TestAClaimWithoutAnOwnerOrLeaseIsRefused(t *testing.T) {
	s, _ := queueStore(t)
	id := mustDeliver(t, s, queueDelivery("anonymous")).QueueID
	now := time.Now()
	for _, c := range []storage.QueueClaim{
		{ID: id, Now: now, LeaseUntil: now.Add(time.Minute)},
		{ID: id, Now: now, Owner: "node-a", LeaseUntil: now},
	} {
		_, err := s.ClaimQueueEntry(context.Background(), c)
		wantErr(t, err, storage.ErrInvalid, "claim without owner or lease")
	}
	if e := mustEntry(t, s, id); e.LeaseOwner != "" {
		t.Errorf("a refused claim leased the entry to %q", e.LeaseOwner)
	}
}

func TestAnEntryRecordedBeforeLeasesDecodesWithoutOne(t *testing.T) {
	// What the previous release wrote for a claimed entry: no lease fields.
	old := `{"id":7,"status":"outbox","source":"user","user":"alice@example.com","from":"alice@example.com",` +
		`"to":["x@remote.test"],"cc":[],"bcc":[],"subject":"old","mime_type":"text/plain","message_id":"<o@x>",` +
		`"date":"2026-11-01T10:00:00Z","attempts":1,"sent":false,"sent_on":null,"error":"","size":10,` +
		`"next_attempt":"2026-11-01T10:05:00Z","recipients":[{"address":"x@remote.test","state":"pending"}],` +
		`"delay_notified":false,"rev":4}`
	e, err := decodeEntry(7, []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 10, 5, 0, 0, time.UTC)
	if e.LeaseOwner != "" || !e.LeaseUntil.IsZero() || (e.LeaseOwner != "" && e.LeaseUntil.After(at)) || !e.PickableAt().Equal(at) {
		t.Errorf("old record: lease %q until %v, pickable at %v; want no lease, due at its next attempt", e.LeaseOwner, e.LeaseUntil, e.PickableAt())
	}
	// And an entry without a lease is written without the fields.
	v, _ := json.Marshal(e)
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["lease_owner"]; ok {
		t.Errorf("an unleased entry is written with lease_owner: %s", v)
	}
	if _, ok := m["lease_until"]; ok {
		t.Errorf("an unleased entry is written with lease_until: %s", v)
	}
}
