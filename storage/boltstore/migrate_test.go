package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// v1Fixture copies testdata/v1.db, written by the release before the
// change feed (testdata/genv1), into a temporary directory.
func v1Fixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pochta.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rawState reads a database file without the store: its schema version
// and every mailbox record, by "user/name".
func rawState(t *testing.T, path string) (uint32, map[string]mailboxRecord) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version uint32
	boxes := map[string]mailboxRecord{}
	err = db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keyVersion))
		return tx.Bucket(bucketUsers).ForEach(func(user, _ []byte) error {
			bb := tx.Bucket(bucketUsers).Bucket(user).Bucket(bucketBoxes)
			return bb.ForEach(func(id, _ []byte) error {
				rec, err := decodeMailbox(bb.Bucket(id).Get(keyInfo))
				if err != nil {
					return err
				}
				boxes[string(user)+"/"+rec.Name] = rec
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return version, boxes
}

// checkMigrated asserts that a migrated fixture kept everything the v1
// release wrote and that the feed works on it.
func checkMigrated(t *testing.T, s *testStore, v1 map[string]mailboxRecord) {
	t.Helper()
	ctx := context.Background()
	const alice, bob = "alice@example.org", "bob@example.org"
	users, err := s.Users(ctx)
	if err != nil || len(users) != 2 || !users[0].Admin {
		t.Fatalf("users %+v, %v", users, err)
	}
	if _, err := s.Authenticate(ctx, bob, "secret"); err != nil {
		t.Errorf("bob's password: %v", err)
	}
	for key, old := range v1 {
		user, name, _ := cut(key)
		st, err := s.MailboxStatus(ctx, user, name)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if st.UIDValidity != old.UIDValidity || uint32(st.UIDNext) != old.UIDNext || st.Messages != old.Messages ||
			st.Unseen != old.Unseen || st.Size != old.Size || st.Subscribed != old.Subscribed {
			t.Errorf("%s: %+v, was %+v", key, st, old)
		}
		if st.HighestModSeq != 1 {
			t.Errorf("%s: HIGHESTMODSEQ %d after migration, want 1", key, st.HighestModSeq)
		}
	}
	inbox := mustMailbox(t, s, bob, storage.Inbox)
	msgs, err := s.Messages(ctx, bob, inbox.ID, []imap.UID{1, 2, 3, 4, 5, 6}, storage.LoadOptions{Envelope: true, Body: true})
	if err != nil {
		t.Fatal(err)
	}
	var uids []imap.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
		if m.ModSeq != 1 {
			t.Errorf("message %d: modseq %d, want 1", m.UID, m.ModSeq)
		}
		seenFlagged := slices.Contains(m.Flags, imap.FlagSeen) && slices.Contains(m.Flags, imap.FlagFlagged)
		if seenFlagged != (m.UID == 2 || m.UID == 3) {
			t.Errorf("message %d flags %v", m.UID, m.Flags)
		}
		if m.Envelope == nil || m.Envelope.Subject == "" || len(m.Body) == 0 {
			t.Errorf("message %d lost its envelope or body", m.UID)
		}
	}
	if !reflect.DeepEqual(uids, []imap.UID{1, 2, 3, 5, 6}) {
		t.Errorf("INBOX UIDs %v, want 1 2 3 5 6 (4 was expunged)", uids)
	}
	archive := mustMailbox(t, s, bob, "Archive/2026")
	am, err := s.Messages(ctx, bob, archive.ID, []imap.UID{1, 2, 3}, storage.LoadOptions{})
	if err != nil || len(am) != 3 || !reflect.DeepEqual(am[0].Flags, []imap.Flag{imap.FlagSeen, "$Work"}) {
		t.Errorf("Archive/2026: %+v, %v", am, err)
	}
	sent, err := s.SentStatus(ctx, alice)
	if err != nil || len(sent) != 1 || len(sent[0].Recipients) != 2 {
		t.Errorf("alice's read tracking: %+v, %v", sent, err)
	}
	entries, err := s.QueueEntries(ctx, storage.QueueFilter{})
	if err != nil || len(entries) != 1 || !slices.Contains(append(entries[0].To, entries[0].Bcc...), "carol@remote.example") {
		t.Errorf("queue: %+v, %v", entries, err)
	}

	// The feed works on migrated data: nothing after 1, the earlier
	// expunge is unknown (and said so), new changes are listed.
	cs, err := s.Changes(ctx, bob, inbox.ID, 1)
	if err != nil || len(cs.Changed) != 0 || len(cs.Vanished) != 0 || cs.VanishedIncomplete {
		t.Errorf("changes since 1: %+v, %v", cs, err)
	}
	if cs, err := s.Changes(ctx, bob, inbox.ID, 0); err != nil || len(cs.Changed) != 5 || !cs.VanishedIncomplete {
		t.Errorf("changes since 0: %+v, %v; want the 5 messages, vanished incomplete", cs, err)
	}
	a := mustAppend(t, s, bob, storage.Inbox, simpleMessage("after migration"))
	if a.UID != 7 {
		t.Errorf("new message got UID %d, want 7", a.UID)
	}
	if _, err := s.StoreFlags(ctx, bob, inbox.ID, []imap.UID{1}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, bob, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	cs, err = s.Changes(ctx, bob, inbox.ID, 1)
	if err != nil || len(cs.Changed) != 1 || cs.Changed[0].UID != 7 || !slices.Equal(cs.Vanished, []imap.UID{1}) || cs.HighestModSeq != 4 {
		t.Errorf("changes after migration: %+v, %v", cs, err)
	}
}

func cut(key string) (string, string, bool) {
	for i := range key {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

// TestOpenMigratesAV1Database: a database of the previous release opens,
// is backed up, migrated and keeps every message, flag, UID and
// UIDVALIDITY.
func TestOpenMigratesAV1Database(t *testing.T) {
	path := v1Fixture(t)
	version, v1 := rawState(t, path)
	if version != 1 || len(v1) != 10 {
		t.Fatalf("fixture: version %d, %d mailboxes", version, len(v1))
	}
	s, err := openTestBolt(path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	checkMigrated(t, s, v1)

	backups, _ := filepath.Glob(path + ".v1-backup-*")
	if len(backups) != 1 {
		t.Fatalf("backups %v, want one", backups)
	}
	if bv, boxes := rawState(t, backups[0]); bv != 1 || !reflect.DeepEqual(boxes, v1) {
		t.Errorf("backup: version %d, mailboxes differ: %v", bv, !reflect.DeepEqual(boxes, v1))
	}
	s = reopen(t, s, path)
	if st := mustMailbox(t, s, "bob@example.org", storage.Inbox); st.HighestModSeq != 4 || st.Messages != 5 {
		t.Errorf("INBOX after a restart: %+v", st)
	}
	if n, _ := filepath.Glob(path + ".v1-backup-*"); len(n) != 1 {
		t.Errorf("a second open took another backup: %v", n)
	}

	// The v1 file restored over it (a downgrade) and upgraded again: the
	// old backup is not of this data, so a new one is taken.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = openTestBolt(path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if n, _ := filepath.Glob(path + ".v1-backup-*"); len(n) != 2 {
		t.Errorf("upgrading a restored v1 file: backups %v, want a second one", n)
	}
}

// TestMigrationCutShortLeavesAUsableDatabase: a migration that stops after
// its first batch (a crash) leaves version 1 recorded and the data
// readable; the next Open finishes it.
func TestMigrationCutShortLeavesAUsableDatabase(t *testing.T) {
	path := v1Fixture(t)
	_, v1 := rawState(t, path)
	crash := errors.New("power cut")
	opts := testOptions()
	opts.migrateBatch = 1
	opts.failMigration = func(batch int) error {
		if batch == 1 {
			return crash
		}
		return nil
	}
	if s, err := openTestBolt(path, opts); !errors.Is(err, crash) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open with a crash after the first batch: %v", err)
	}
	version, boxes := rawState(t, path)
	if version != 1 {
		t.Fatalf("schema version %d after the cut-short migration, want 1", version)
	}
	migrated := 0
	for key, rec := range boxes {
		if rec.ModSeq > 0 {
			migrated++
		}
		rec.ModSeq, rec.VanishedFloor = 0, 0
		if rec != v1[key] {
			t.Errorf("%s changed: %+v, was %+v", key, rec, v1[key])
		}
	}
	if migrated != 1 {
		t.Errorf("%d mailboxes migrated by the first batch, want 1", migrated)
	}
	s, err := openTestBolt(path, testOptions())
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	checkMigrated(t, s, v1)
	if n, _ := filepath.Glob(path + ".v1-backup-*"); len(n) != 1 {
		t.Errorf("backups %v: the resumed migration must keep the first", n)
	}
}
