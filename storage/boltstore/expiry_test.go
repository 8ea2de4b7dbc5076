package boltstore

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

func appendAt(t *testing.T, s storage.Store, user, box, subject string, date time.Time, flags ...imap.Flag) *storage.Appended {
	t.Helper()
	a, err := s.Append(context.Background(), user, box, &storage.NewMessage{Raw: []byte(simpleMessage(subject)), InternalDate: date, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func expire(t *testing.T, s storage.Store, cutoff time.Time) int {
	t.Helper()
	n, err := s.ExpireUnread(context.Background(), cutoff)
	if err != nil {
		t.Fatalf("expire: %v", err)
	}
	return n
}

func TestExpiryWorksInBatchesAndSkipsStaleEntries(t *testing.T) {
	s, _ := openTestStore(t)
	mustCreateUser(t, s, bob)
	mustCreateUser(t, s, carol)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range storage.ExpireBatch + 10 {
		appendAt(t, s, bob, storage.Inbox, "bulk", t0.Add(time.Duration(i)*time.Second))
	}
	appendAt(t, s, carol, storage.Inbox, "orphan", t0)
	// carol goes away; her index entry is left for the sweep to drop.
	if err := s.DeleteUser(context.Background(), carol); err != nil {
		t.Fatal(err)
	}
	if n := expire(t, s, t0.Add(time.Hour)); n != storage.ExpireBatch+10 {
		t.Fatalf("deleted %d, want %d", n, storage.ExpireBatch+10)
	}
	if st := mustMailbox(t, s, bob, storage.Inbox); st.Messages != 0 || st.Unseen != 0 {
		t.Fatalf("INBOX %+v", st)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketUnread).Cursor().First(); k != nil {
			t.Errorf("index not empty: %x", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenBuildsTheUnreadIndexOfAnOlderDatabase(t *testing.T) {
	s, path := openTestStore(t)
	mustCreateUser(t, s, bob)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	appendAt(t, s, bob, storage.Inbox, "from before", t0)
	appendAt(t, s, bob, storage.Inbox, "read before", t0, imap.FlagSeen)
	// What a database written before the index looks like.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketUnread) }); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path)
	if n := expire(t, s, t0.Add(time.Hour)); n != 1 {
		t.Fatalf("deleted %d after reopen, want 1", n)
	}
}

func TestDateKeyOrdersAndClamps(t *testing.T) {
	ds := []time.Time{
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i := 1; i < len(ds); i++ {
		if storage.UnreadDate(ds[i-1]) > storage.UnreadDate(ds[i]) {
			t.Errorf("UnreadDate(%v) > UnreadDate(%v)", ds[i-1], ds[i])
		}
	}
}
