package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// spoil overwrites one message's record in bucket ("meta" or "parsed")
// with garbage, through bbolt directly, as a bad disk or an old bug would.
func spoil(t *testing.T, path, user string, box uint64, uid imap.UID, bucket string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers).Bucket([]byte(user)).Bucket(bucketBoxes).Bucket(be64(box)).Bucket([]byte(bucket))
		return b.Put(be32(uint32(uid)), []byte{0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func fetchAll(s storage.Store, user string, box uint64) ([]*storage.Message, error) {
	uids, err := s.UIDs(context.Background(), user, box)
	if err != nil {
		return nil, err
	}
	return s.Messages(context.Background(), user, box, uids, storage.LoadOptions{Envelope: true, BodyStructure: true, Body: true})
}

func TestCheckRepairQuarantinesAnUndecodableMessageAndTheRestOfTheMailboxWorks(t *testing.T) {
	for _, bucket := range []string{"parsed", "meta"} {
		t.Run(bucket, func(t *testing.T) {
			s, path := openTestStore(t)
			mustCreateUser(t, s, "alice@example.test")
			box := mustMailbox(t, s, "alice@example.test", storage.Inbox).ID
			for i := 1; i <= 3; i++ {
				mustAppend(t, s, "alice@example.test", storage.Inbox, fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			spoil(t, path, "alice@example.test", box, 2, bucket)
			s, err := openTestBolt(path, testOptions())
			if err != nil {
				t.Fatalf("open after one bad record: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			if _, err := fetchAll(s, "alice@example.test", box); err == nil {
				t.Fatal("fetching the mailbox with a bad record succeeded; the test damaged nothing")
			}

			rep, err := s.Check(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Bad) != 1 || rep.Bad[0].User != "alice@example.test" || rep.Bad[0].Mailbox != storage.Inbox || rep.Bad[0].UID != 2 || rep.Bad[0].Error == "" {
				t.Fatalf("check found %+v, want alice's INBOX UID 2", rep.Bad)
			}
			if rep.Checked < 5 || rep.Remaining() != 1 {
				t.Errorf("checked %d records with %d remaining, want at least the user, 4 mailboxes, 3 messages and 1 remaining", rep.Checked, rep.Remaining())
			}

			rep, err = s.Check(context.Background(), true)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Bad) != 1 || !rep.Bad[0].Quarantined || rep.Remaining() != 0 {
				t.Fatalf("repair: %+v, want UID 2 quarantined", rep.Bad)
			}
			msgs, err := fetchAll(s, "alice@example.test", box)
			if err != nil {
				t.Fatalf("fetch after repair: %v", err)
			}
			if len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 3 || !bytes.Contains(msgs[1].Body, []byte("body 3")) {
				t.Errorf("after repair the INBOX holds %d messages, want UIDs 1 and 3", len(msgs))
			}
			st := mustMailbox(t, s, "alice@example.test", storage.Inbox)
			if st.Messages != 2 || st.Unseen != 2 || st.Size != msgs[0].Size+msgs[1].Size {
				t.Errorf("counters after repair: %d messages, %d unseen, %d bytes; want 2, 2, %d", st.Messages, st.Unseen, st.Size, msgs[0].Size+msgs[1].Size)
			}
			if rep, err := s.Check(context.Background(), false); err != nil || len(rep.Bad) != 0 {
				t.Errorf("check after repair: %+v, %v; want nothing bad", rep, err)
			}
			// Nothing was thrown away: the bytes wait in the quarantine.
			s.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_ = db.View(func(tx *bolt.Tx) error {
				q := tx.Bucket(bucketQuarantine)
				if q == nil || q.Bucket([]byte("alice@example.test")) == nil || q.Bucket([]byte("alice@example.test")).Stats().KeyN != 1 {
					t.Error("the quarantine does not hold the bad message")
				}
				return nil
			})
		})
	}
}

func TestOpenRefusesAnEmptyFileInsteadOfStartingAnEmptyStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pochta.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openTestBolt(path, testOptions())
	if !errors.Is(err, storage.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("open of a zero-byte file: %v; want ErrDamaged naming %s and a backup", err, path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the zero-byte file was changed: %v, %v", fi, err)
	}
}

func TestOpenRefusesAFileThatIsNotABboltDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pochta.toml")
	text := strings.Repeat("hostname = \"mail.example.com\"\n", 300)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openTestBolt(path, testOptions())
	if !errors.Is(err, storage.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a pochta database") {
		t.Fatalf("open of a text file: %v; want a refusal naming %s", err, path)
	}
	if got, _ := os.ReadFile(path); string(got) != text {
		t.Error("the text file was changed")
	}
}

func TestOpenMustExistCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "pochta.db")
	opts := testOptions()
	opts.MustExist = true
	_, err := openTestBolt(path, opts)
	if !errors.Is(err, storage.ErrNoDatabase) || !strings.Contains(err.Error(), path) {
		t.Fatalf("open of a missing database with MustExist: %v; want ErrNoDatabase naming %s", err, path)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MustExist created %s (%v)", dir, err)
	}
}

// TestADamagedPageFailsItsReadsWithoutAPanic damages the page holding one
// user's messages by overwriting bytes in the file: bbolt panics on such
// a page; the store must answer with an error naming the file instead,
// keep serving the other user, and Check must point at the damaged user.
func TestADamagedPageFailsItsReadsWithoutAPanic(t *testing.T) {
	s, path := openTestStore(t)
	mustCreateUser(t, s, "alice@example.test")
	mustCreateUser(t, s, "victim@example.test")
	aliceBox := mustMailbox(t, s, "alice@example.test", storage.Inbox).ID
	victimBox := mustMailbox(t, s, "victim@example.test", storage.Inbox).ID
	mustAppend(t, s, "alice@example.test", storage.Inbox, "Subject: fine\r\n\r\nfine\r\n")
	for i := 0; i < 40; i++ {
		mustAppend(t, s, "victim@example.test", storage.Inbox, fmt.Sprintf("Subject: needle-%02d\r\n\r\n%s\r\n", i, strings.Repeat("x", 1500)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("needle-20"))
	if at < 0 {
		t.Fatal("marker not found in the file")
	}
	page := at / os.Getpagesize() * os.Getpagesize()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The page header's flags (offset 8) say what the page is; 0xffff is
	// no kind bbolt knows.
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, int64(page+8)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err = openTestBolt(path, testOptions())
	if err != nil {
		if !errors.Is(err, storage.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "pochta check") {
			t.Fatalf("open of a damaged file: %v; want ErrDamaged naming %s and pochta check", err, path)
		}
		return
	}
	t.Cleanup(func() { s.Close() })
	_, err = fetchAll(s, "victim@example.test", victimBox)
	if !errors.Is(err, storage.ErrDamaged) || !strings.Contains(err.Error(), path) {
		t.Fatalf("fetching from the damaged page: %v; want ErrDamaged naming %s", err, path)
	}
	if msgs, err := fetchAll(s, "alice@example.test", aliceBox); err != nil || len(msgs) != 1 {
		t.Errorf("alice's INBOX beside the damaged page: %d messages, %v; want 1", len(msgs), err)
	}
	rep, err := s.Check(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range rep.Bad {
		found = found || b.User == "victim@example.test"
	}
	if !found || rep.Remaining() == 0 {
		t.Errorf("check of the damaged page reported %+v; want the victim's records, left unrepaired", rep.Bad)
	}
}
