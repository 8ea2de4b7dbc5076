package pgstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

// TestImportFromBolt copies a bbolt store (several users, a re-created
// mailbox, flagged and seen messages, a deleted-but-subscribed name) into
// an empty PostgreSQL database and checks that every Store read answers
// the same on both, that passwords still authenticate, and that the bbolt
// file is byte-for-byte unchanged.
func TestImportFromBolt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pochta.db")
	src, err := boltstore.Open(path, boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	app := func(user, box, subject string, flags ...imap.Flag) {
		t.Helper()
		raw := "From: a@example.com\r\nTo: b@example.com\r\nSubject: " + subject +
			"\r\nMessage-ID: <" + subject + "@example.com>\r\n\r\nbody " + subject + "\r\n"
		_, err := src.Append(ctx, user, box, &storage.NewMessage{Raw: []byte(raw), Flags: flags,
			InternalDate: time.Date(2026, 11, 3, 4, 5, 6, 123456789, time.UTC)})
		must(err)
	}
	must(src.CreateUser(ctx, "alice@example.com", "alice password", true))
	must(src.CreateUser(ctx, "bob@example.com", "bob password", false))
	app("alice@example.com", "INBOX", "one", imap.FlagSeen)
	app("alice@example.com", "INBOX", "two", imap.FlagFlagged, "$Work")
	must(src.CreateMailbox(ctx, "alice@example.com", "Projects"))
	app("alice@example.com", "Projects", "three")
	app("alice@example.com", "Projects", "four")
	must(src.DeleteMailbox(ctx, "alice@example.com", "Projects"))
	must(src.CreateMailbox(ctx, "alice@example.com", "Projects"))
	app("alice@example.com", "Projects", "five", imap.FlagSeen, imap.FlagAnswered)
	app("bob@example.com", "Sent", "six", imap.FlagSeen)
	must(src.CreateMailbox(ctx, "bob@example.com", "Old"))
	must(src.SetSubscribed(ctx, "bob@example.com", "Old", true))
	must(src.DeleteMailbox(ctx, "bob@example.com", "Old"))
	before, err := os.ReadFile(path)
	must(err)

	dst, err := Open(ctx, pgtest.New(t), Options{PasswordCost: bcrypt.MinCost})
	must(err)
	defer dst.Close()
	imp := dst.(storage.Importer)
	empty, err := imp.Empty(ctx)
	must(err)
	if !empty {
		t.Fatal("a new database is not Empty")
	}
	must(imp.Import(ctx, src.(storage.Exporter)))
	if empty, err := imp.Empty(ctx); err != nil || empty {
		t.Fatalf("after the import Empty = %v, %v", empty, err)
	}

	srcUsers, err := src.Users(ctx)
	must(err)
	dstUsers, err := dst.Users(ctx)
	must(err)
	if !reflect.DeepEqual(normUsers(srcUsers), normUsers(dstUsers)) {
		t.Errorf("Users: bbolt %+v, PostgreSQL %+v", srcUsers, dstUsers)
	}
	for user, pw := range map[string]string{"alice@example.com": "alice password", "bob@example.com": "bob password"} {
		if _, err := dst.Authenticate(ctx, user, pw); err != nil {
			t.Errorf("%s's password does not authenticate after the copy: %v", user, err)
		}
		sb, err := src.Mailboxes(ctx, user)
		must(err)
		db, err := dst.Mailboxes(ctx, user)
		must(err)
		if len(sb) != len(db) {
			t.Fatalf("%s: %d mailboxes on bbolt, %d on PostgreSQL", user, len(sb), len(db))
		}
		for i := range sb {
			ss, err := src.MailboxStatus(ctx, user, sb[i].Name)
			must(err)
			ds, err := dst.MailboxStatus(ctx, user, db[i].Name)
			must(err)
			ss.ID, ds.ID = 0, 0
			if *ss != *ds {
				t.Errorf("%s: MailboxStatus bbolt %+v, PostgreSQL %+v", user, *ss, *ds)
			}
			su, err := src.UIDs(ctx, user, sb[i].ID)
			must(err)
			du, err := dst.UIDs(ctx, user, db[i].ID)
			must(err)
			if !reflect.DeepEqual(su, du) {
				t.Fatalf("%s/%s: UIDs bbolt %v, PostgreSQL %v", user, sb[i].Name, su, du)
			}
			sm, err := src.Messages(ctx, user, sb[i].ID, su, storage.LoadOptions{Body: true, Envelope: true})
			must(err)
			dm, err := dst.Messages(ctx, user, db[i].ID, du, storage.LoadOptions{Body: true, Envelope: true})
			must(err)
			for j := range sm {
				s, d := sm[j], dm[j]
				if s.UID != d.UID || !reflect.DeepEqual(s.Flags, d.Flags) || !s.InternalDate.Truncate(time.Microsecond).Equal(d.InternalDate) ||
					s.ModSeq != d.ModSeq || s.Size != d.Size || !bytes.Equal(s.Body, d.Body) || !reflect.DeepEqual(s.Envelope, d.Envelope) {
					t.Errorf("%s/%s: message bbolt %d %v %v modseq %d, PostgreSQL %d %v %v modseq %d", user, sb[i].Name,
						s.UID, s.Flags, s.InternalDate, s.ModSeq, d.UID, d.Flags, d.InternalDate, d.ModSeq)
				}
			}
		}
		ss, err := src.Subscriptions(ctx, user)
		must(err)
		ds, err := dst.Subscriptions(ctx, user)
		must(err)
		if !reflect.DeepEqual(ss, ds) {
			t.Errorf("%s: Subscriptions bbolt %q, PostgreSQL %q", user, ss, ds)
		}
	}
	// A mailbox created after the copy gets a UIDVALIDITY above every
	// copied one.
	must(dst.CreateMailbox(ctx, "alice@example.com", "New"))
	nb, err := dst.MailboxStatus(ctx, "alice@example.com", "New")
	must(err)
	for _, user := range []string{"alice@example.com", "bob@example.com"} {
		list, err := src.Mailboxes(ctx, user)
		must(err)
		for _, m := range list {
			if m.UIDValidity >= nb.UIDValidity {
				t.Errorf("new mailbox's UIDVALIDITY %d not above copied %s/%s's %d", nb.UIDValidity, user, m.Name, m.UIDValidity)
			}
		}
	}

	after, err := os.ReadFile(path)
	must(err)
	if !bytes.Equal(before, after) {
		t.Error("the copy changed the bbolt file")
	}
}

func normUsers(us []storage.User) []storage.User {
	out := make([]storage.User, len(us))
	for i, u := range us {
		u.Created = u.Created.Truncate(time.Microsecond).UTC()
		out[i] = u
	}
	return out
}
