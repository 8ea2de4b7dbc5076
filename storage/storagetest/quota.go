package storagetest

import (
	"context"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// appendManyAllOrNothing: MULTIAPPEND stores every message under
// ascending UIDs in the order given, or, when one of them is refused,
// none (no message, no UID spent, no event).
func appendManyAllOrNothing(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice)
	ctx := context.Background()
	events := Listen(s)
	msgs := []*storage.NewMessage{
		{Raw: []byte(simpleMessage("one"))},
		{Raw: []byte(simpleMessage("two")), Flags: []imap.Flag{`\Bogus`}},
		{Raw: []byte(simpleMessage("three"))},
	}
	_, err := s.AppendMany(ctx, alice, storage.Inbox, msgs)
	wantErr(t, err, storage.ErrInvalid, "one bad message")
	if st := mustMailbox(t, s, alice, storage.Inbox); st.Messages != 0 || st.UIDNext != 1 {
		t.Fatalf("INBOX after a refused MULTIAPPEND: %d messages, UIDNEXT %d; want nothing stored", st.Messages, st.UIDNext)
	}
	if evs := events.Snapshot(); len(evs) != 0 {
		t.Errorf("events from a refused MULTIAPPEND: %+v", evs)
	}
	_, err = s.AppendMany(ctx, alice, "Nope", msgs[:1])
	wantErr(t, err, storage.ErrNotFound, "unknown mailbox")

	msgs[1].Flags = []imap.Flag{imap.FlagSeen}
	got, err := s.AppendMany(ctx, alice, storage.Inbox, msgs)
	if err != nil {
		t.Fatalf("MULTIAPPEND of three: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("%d results for three messages", len(got))
	}
	for i, a := range got {
		if a.UID != imap.UID(i+1) {
			t.Errorf("message %d got UID %d, want %d (ascending, in order)", i+1, a.UID, i+1)
		}
		want := []string{"one", "two", "three"}[i]
		if m := loadOne(t, s, alice, a.MailboxID, a.UID); m.Envelope == nil || m.Envelope.Subject != want {
			t.Errorf("UID %d holds %+v, want subject %q", a.UID, m.Envelope, want)
		}
	}
	if st := mustMailbox(t, s, alice, storage.Inbox); st.Messages != 3 || st.Unseen != 2 {
		t.Errorf("INBOX after MULTIAPPEND: %d messages, %d unseen; want 3 and 2", st.Messages, st.Unseen)
	}
}

// quotaBoundsAppendAndCopy: Usage sums every mailbox of the user; with a
// quota, Append, AppendMany and Copy that would pass it fail with
// ErrOverQuota and store nothing; Move within the user and expunges that
// free space keep working.
func quotaBoundsAppendAndCopy(t *testing.T, b Backend) {
	if b.NewWithQuota == nil {
		t.Fatal("the backend has no NewWithQuota")
	}
	one := simpleMessage("quota 1")
	size := int64(len(one))
	s := b.NewWithQuota(t, 3*size)
	ctx := context.Background()
	mustCreateUser(t, s, alice)
	mustCreateUser(t, s, bob)
	if q := s.Quota(); q != 3*size {
		t.Errorf("Quota() = %d, want %d", q, 3*size)
	}
	usage := func() int64 {
		t.Helper()
		u, err := s.Usage(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	a1 := mustAppend(t, s, alice, storage.Inbox, one)
	mustAppend(t, s, alice, storage.Drafts, simpleMessage("quota 2"))
	if u := usage(); u != 2*size {
		t.Errorf("usage %d after two messages in two mailboxes, want %d", u, 2*size)
	}
	if u, _ := s.Usage(ctx, bob); u != 0 {
		t.Errorf("bob's usage %d, want 0", u)
	}
	_, err := s.AppendMany(ctx, alice, storage.Inbox, []*storage.NewMessage{
		{Raw: []byte(simpleMessage("quota 3"))}, {Raw: []byte(simpleMessage("quota 4"))},
	})
	wantErr(t, err, storage.ErrOverQuota, "MULTIAPPEND past the quota")
	if st := mustMailbox(t, s, alice, storage.Inbox); st.Messages != 1 {
		t.Errorf("INBOX holds %d messages after a refused MULTIAPPEND, want 1", st.Messages)
	}
	mustAppend(t, s, alice, storage.Inbox, simpleMessage("quota 3"))
	_, err = s.Append(ctx, alice, storage.Inbox, &storage.NewMessage{Raw: []byte("x")})
	wantErr(t, err, storage.ErrOverQuota, "Append past the quota")
	_, err = s.Copy(ctx, alice, a1.MailboxID, []imap.UID{a1.UID}, storage.Trash)
	wantErr(t, err, storage.ErrOverQuota, "Copy past the quota")
	if _, err := s.Move(ctx, alice, a1.MailboxID, []imap.UID{a1.UID}, storage.Trash); err != nil {
		t.Errorf("Move within the user at the quota: %v", err)
	}
	if u := usage(); u != 3*size {
		t.Errorf("usage %d after the move, want %d", u, 3*size)
	}
	// Another user's mail does not count.
	mustAppend(t, s, bob, storage.Inbox, one)
	trash := mustMailbox(t, s, alice, storage.Trash)
	uids := mustUIDs(t, s, alice, trash.ID)
	expunge(t, s, alice, &storage.Appended{MailboxID: trash.ID, UID: uids[0]})
	if u := usage(); u != 2*size {
		t.Errorf("usage %d after an expunge, want %d", u, 2*size)
	}
	mustAppend(t, s, alice, storage.Inbox, one)

	// Without a quota nothing is refused and the usage is still told.
	free, _ := b.New(t)
	mustCreateUser(t, free, alice)
	mustAppend(t, free, alice, storage.Inbox, one)
	if q := free.Quota(); q != 0 {
		t.Errorf("Quota() of a store without one = %d", q)
	}
	if u, err := free.Usage(ctx, alice); err != nil || u != size {
		t.Errorf("usage without a quota: %d %v, want %d", u, err, size)
	}
	if _, err := free.Usage(ctx, "ghost@example.com"); err == nil {
		t.Error("usage of an unknown user did not fail")
	}
}

// appendManySentDuplicateKeepsItsPlace: in a MULTIAPPEND into Sent, the
// client's copy of a message the server already keeps there is not stored
// again; its entry is the existing copy, and the other messages are stored
// (de-duplication is not a failure of the command).
func appendManySentDuplicateKeepsItsPlace(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	res := submit(t, s, "already sent", bob)
	raw := sentBody(t, s, res.Sent)
	got, err := s.AppendMany(context.Background(), alice, storage.Sent, []*storage.NewMessage{
		{Raw: []byte(simpleMessage("new before"))},
		{Raw: raw, Flags: []imap.Flag{imap.FlagSeen}},
		{Raw: []byte(simpleMessage("new after"))},
	})
	if err != nil {
		t.Fatalf("MULTIAPPEND into Sent with a duplicate: %v", err)
	}
	if *got[1] != *res.Sent {
		t.Errorf("the duplicate's entry is %+v, want the server's copy %+v", got[1], res.Sent)
	}
	if got[0].UID <= res.Sent.UID || got[2].UID != got[0].UID+1 {
		t.Errorf("new messages got UIDs %d and %d after the server's %d; want new, ascending ones", got[0].UID, got[2].UID, res.Sent.UID)
	}
	if st := mustMailbox(t, s, alice, storage.Sent); st.Messages != 3 {
		t.Errorf("Sent holds %d messages, want 3 (the duplicate stored once)", st.Messages)
	}
}
