package boltstore

import (
	"context"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestSubscriptionsMigratedFromRecordFlags: a database from before the
// "subs" bucket keeps its subscriptions only as flags on the mailbox
// records; Open copies them into the bucket, so the first DELETE after the
// upgrade keeps the name subscribed.
func TestSubscriptionsMigratedFromRecordFlags(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	const alice = "alice@example.com"
	mustCreateUser(t, s, alice)
	for _, name := range []string{"News", "Quiet"} {
		if err := s.CreateMailbox(ctx, alice, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetSubscribed(ctx, alice, "News", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Make it an old database: no bucket and no migration mark, the flags
	// alone.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Delete(keySubsMigrated); err != nil {
			return err
		}
		return tx.Bucket(bucketUsers).Bucket([]byte(alice)).DeleteBucket(bucketSubs)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := openBolt(path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	if err := s2.DeleteMailbox(ctx, alice, "News"); err != nil {
		t.Fatal(err)
	}
	got, err := s2.Subscriptions(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Drafts", "INBOX", "News", "Sent", "Trash"}; !slices.Equal(got, want) {
		t.Errorf("after the upgrade and DELETE News: Subscriptions = %q, want %q", got, want)
	}
}
