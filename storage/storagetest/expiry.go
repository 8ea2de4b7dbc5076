package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

func expiryDeletesOnlyOldUnreadInboxMessages(t *testing.T, b Backend) {
	s, _ := b.New(t)
	mustCreateUser(t, s, bob)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	oldUnread := appendAt(t, s, bob, storage.Inbox, "old unread", t0)
	oldRead := appendAt(t, s, bob, storage.Inbox, "old read", t0, imap.FlagSeen)
	newUnread := appendAt(t, s, bob, storage.Inbox, "new unread", t0.Add(2*time.Hour))
	appendAt(t, s, bob, storage.Sent, "old sent", t0)
	appendAt(t, s, bob, storage.Drafts, "old draft", t0)
	if err := s.CreateMailbox(context.Background(), bob, "INBOX/sub"); err != nil {
		t.Fatal(err)
	}
	appendAt(t, s, bob, "INBOX/sub", "old in a subfolder", t0)

	if n := expire(t, s, t0); n != 0 {
		t.Fatalf("a message exactly at the cutoff is not older than it: %d deleted", n)
	}
	if n := expire(t, s, t0.Add(time.Hour)); n != 1 {
		t.Fatalf("deleted %d, want 1", n)
	}
	uids := mustUIDs(t, s, bob, oldUnread.MailboxID)
	if len(uids) != 2 || uids[0] != oldRead.UID || uids[1] != newUnread.UID {
		t.Fatalf("INBOX left with %v, want the read and the new message", uids)
	}
	if st := mustMailbox(t, s, bob, storage.Inbox); st.Unseen != 1 || st.Messages != 2 {
		t.Fatalf("INBOX counters %+v", st)
	}
	for _, box := range []string{storage.Sent, storage.Drafts, "INBOX/sub"} {
		if st := mustMailbox(t, s, bob, box); st.Messages != 1 {
			t.Errorf("%s was touched: %+v", box, st)
		}
	}
	if n := expire(t, s, t0.Add(time.Hour)); n != 0 {
		t.Fatalf("second sweep deleted %d", n)
	}
}

func expiryAfterMarkingUnreadAgain(t *testing.T, b Backend) {
	s, _ := b.New(t)
	mustCreateUser(t, s, bob)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := appendAt(t, s, bob, storage.Inbox, "flip", t0)
	markSeen(t, s, ctx, bob, a)
	if n := expire(t, s, t0.Add(time.Hour)); n != 0 {
		t.Fatalf("a read message expired")
	}
	if _, err := s.StoreFlags(ctx, bob, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsDel, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if n := expire(t, s, t0.Add(time.Hour)); n != 1 {
		t.Fatalf("a message marked unread again did not expire: %d", n)
	}
}

func expiryFollowsMovesIntoAndOutOfInbox(t *testing.T, b Backend) {
	s, _ := b.New(t)
	mustCreateUser(t, s, bob)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	out := appendAt(t, s, bob, storage.Inbox, "filed away", t0)
	in := appendAt(t, s, bob, storage.Drafts, "moved in", t0)
	if _, err := s.Move(ctx, bob, out.MailboxID, []imap.UID{out.UID}, storage.Drafts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Move(ctx, bob, in.MailboxID, []imap.UID{in.UID}, storage.Inbox); err != nil {
		t.Fatal(err)
	}
	if n := expire(t, s, t0.Add(time.Hour)); n != 1 {
		t.Fatalf("deleted %d, want only the message moved into INBOX", n)
	}
	if st := mustMailbox(t, s, bob, storage.Drafts); st.Messages != 1 {
		t.Fatalf("Drafts %+v", st)
	}
}

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
