package boltstore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// fillQueue writes n entries straight into the queue's buckets, through
// saveEntry as every real write does: entry i belongs to user i%users,
// every tenth is system mail and statuses rotate.
func fillQueue(t testing.TB, s *testStore, n, users int) {
	t.Helper()
	statuses := []string{storage.QueueOutbox, storage.QueueSent, storage.QueueFailed, storage.QueueHeld}
	now := time.Now().UTC()
	for start := 0; start < n; start += 10000 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			q, err := openQueue(tx)
			if err != nil {
				return err
			}
			for i := start; i < min(start+10000, n); i++ {
				id, err := q.entries.NextSequence()
				if err != nil {
					return err
				}
				e := &storage.QueueEntry{
					ID: id, Status: statuses[i%len(statuses)], Source: storage.SourceUser,
					User: fmt.Sprintf("u%d@example.com", i%users), From: fmt.Sprintf("u%d@example.com", i%users),
					To: []string{"x@remote.test"}, Cc: []string{}, Bcc: []string{}, Subject: fmt.Sprintf("message %d", i),
					Date: now.Add(time.Duration(i) * time.Millisecond), NextAttempt: now,
					Recipients: []storage.QueueRecipient{{Address: "x@remote.test", State: storage.RcptPending}},
				}
				if i%10 == 9 {
					e.Source, e.User, e.From = storage.SourceSystem, "", "postmaster@example.com"
				}
				if err := q.saveEntry(nil, e, &eventList{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// walk pages through a listing and returns the IDs in the order served.
func walk(t testing.TB, s storage.Store, f storage.QueueFilter, limit int, oldest bool) []uint64 {
	t.Helper()
	var ids []uint64
	var after uint64
	for pages := 0; ; pages++ {
		page, next, err := s.QueueEntriesPage(context.Background(), f, storage.QueuePage{After: after, Limit: limit, Oldest: oldest})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d entries, limit %d", len(page), limit)
		}
		for _, e := range page {
			ids = append(ids, e.ID)
		}
		if next == 0 {
			return ids
		}
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		after = next
	}
}

func TestQueuePagesServeEveryMatchingEntryOnceByDate(t *testing.T) {
	s, _ := openTestStore(t)
	fillQueue(t, s, 230, 3)
	filters := []storage.QueueFilter{
		{}, {Status: storage.QueueFailed}, {Source: storage.SourceSystem}, {User: "U1@example.com"},
		{User: "u2@example.com", Status: storage.QueueSent}, {Status: storage.QueueHeld, Source: storage.SourceUser}, {User: "nobody@example.com"},
	}
	for _, f := range filters {
		all, err := s.QueueEntries(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		var want []uint64
		for _, e := range all {
			want = append(want, e.ID)
		}
		for _, limit := range []int{1, 7, 1000} {
			if got := walk(t, s, f, limit, true); !slices.Equal(got, want) {
				t.Errorf("%+v oldest first, pages of %d: %d entries %v…, want %d", f, limit, len(got), head(got), len(want))
			}
			slices.Reverse(want)
			if got := walk(t, s, f, limit, false); !slices.Equal(got, want) {
				t.Errorf("%+v newest first, pages of %d: %d entries %v…, want %d %v…", f, limit, len(got), head(got), len(want), head(want))
			}
			slices.Reverse(want)
		}
	}
	if _, _, err := s.QueueEntriesPage(context.Background(), storage.QueueFilter{Status: "lost"}, storage.QueuePage{}); err == nil {
		t.Error("an unknown status was accepted")
	}
}

func head(ids []uint64) []uint64 { return ids[:min(len(ids), 5)] }

func TestQueuePageFollowsResendAndDelete(t *testing.T) {
	s, _ := queueStore(t)
	ctx := context.Background()
	id := mustDeliver(t, s, queueDelivery("one")).QueueID
	other := mustDeliver(t, s, queueDelivery("two")).QueueID
	e := mustEntry(t, s, id)
	e.Status, e.Recipients[0].State, e.Recipients[1].State, e.Recipients[2].State = storage.QueueFailed, storage.RcptFailed, storage.RcptFailed, storage.RcptFailed
	if _, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e}); err != nil {
		t.Fatal(err)
	}
	failed := storage.QueueFilter{Status: storage.QueueFailed, User: qAlice}
	if got := walk(t, s, failed, 10, false); !slices.Equal(got, []uint64{id}) {
		t.Fatalf("failed entries %v, want [%d]", got, id)
	}
	if _, err := s.ResendQueueEntry(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := walk(t, s, failed, 10, false); len(got) != 0 {
		t.Fatalf("failed entries after resend %v, want none", got)
	}
	if got := walk(t, s, storage.QueueFilter{Status: storage.QueueOutbox}, 10, false); !slices.Equal(got, []uint64{other, id}) {
		t.Fatalf("outbox after resend %v, want [%d %d]", got, other, id)
	}
	if err := s.DeleteQueueEntry(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, f := range []storage.QueueFilter{{}, {User: qAlice}, {Status: storage.QueueOutbox}, {Source: storage.SourceUser}} {
		if got := walk(t, s, f, 10, false); !slices.Equal(got, []uint64{id}) {
			t.Fatalf("%+v after delete: %v, want [%d]", f, got, id)
		}
	}
}

func TestQueuePageWorksOnADatabaseFromBeforeTheIndex(t *testing.T) {
	s, path := openTestStore(t)
	fillQueue(t, s, 40, 2)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketQueue).DeleteBucket(bucketQIndex) }); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path)
	want := walk(t, s, storage.QueueFilter{User: "u1@example.com"}, 3, false)
	if len(want) != 16 { // 20 of u1's, less the four that are system mail
		t.Fatalf("without the index: %d entries of u1, want 16", len(want))
	}
	// The next write builds the index; the listing stays the same.
	if err := s.DeleteQueueEntry(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if got := walk(t, s, storage.QueueFilter{User: "u1@example.com"}, 3, false); !slices.Equal(got, want) {
		t.Fatalf("with the rebuilt index: %v, want %v", got, want)
	}
	if got := walk(t, s, storage.QueueFilter{User: "u0@example.com"}, 3, true); len(got) != 19 || got[0] != 3 {
		t.Fatalf("u0 after deleting entry 1: %v, want 19 entries from 3", got)
	}
}

// TestQueuePageOf100kEntriesIsInstant: a user's page in a queue of 100,000
// entries reads that user's entries, not the queue.
func TestQueuePageOf100kEntriesIsInstant(t *testing.T) {
	s, _ := openTestStore(t)
	fillQueue(t, s, 100000, 5000) // 20 entries per user
	ctx := context.Background()
	for _, f := range []storage.QueueFilter{{}, {User: "u4321@example.com"}, {User: "u4321@example.com", Status: storage.QueueSent}, {Status: storage.QueueFailed}} {
		start := time.Now()
		n := 0
		var after uint64
		for range 3 { // the first three pages
			page, next, err := s.QueueEntriesPage(ctx, f, storage.QueuePage{After: after, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			n += len(page)
			if after = next; next == 0 {
				break
			}
		}
		if n == 0 {
			t.Fatalf("%+v: nothing listed", f)
		}
		// Reading every entry takes about a second on this machine; a
		// page served from the index takes about a millisecond.
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Errorf("%+v: three pages took %v", f, d)
		}
	}
}

func BenchmarkQueuePageOfOneUserIn100k(b *testing.B) {
	s, _ := openTestStore(b)
	fillQueue(b, s, 100000, 5000)
	f := storage.QueueFilter{User: "u4321@example.com"}
	for b.Loop() {
		if _, _, err := s.QueueEntriesPage(context.Background(), f, storage.QueuePage{Limit: 100}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestQueueFilterByMessageIDFindsThatMessagesEntry(t *testing.T) {
	s, _ := queueStore(t)
	mustDeliver(t, s, queueDelivery("first"))
	id := mustDeliver(t, s, queueDelivery("second")).QueueID
	for _, mid := range []string{"<second@example.com>", "second@example.com"} {
		if got := walk(t, s, storage.QueueFilter{MessageID: mid, User: qAlice}, 10, false); !slices.Equal(got, []uint64{id}) {
			t.Errorf("message_id %q: %v, want [%d]", mid, got, id)
		}
	}
	if got := walk(t, s, storage.QueueFilter{MessageID: "<third@example.com>"}, 10, false); len(got) != 0 {
		t.Errorf("an unknown Message-ID selects %v", got)
	}
}
