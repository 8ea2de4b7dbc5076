package storagetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

func trackingSentCopySeenWhenTheLastRecipientReads(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	events := Listen(s)
	res := submit(t, s, "report", bob, carol)

	if isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy is \\Seen while both recipients are pending")
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackUnread || got[carol] != storage.TrackUnread {
		t.Fatalf("after delivery: %v", got)
	}

	markSeen(t, s, context.Background(), bob, res.Copies[bob])
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackRead || got[carol] != storage.TrackUnread {
		t.Fatalf("after bob read: %v", got)
	}
	if isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy is \\Seen while carol has not read hers")
	}
	if st := mustMailbox(t, s, alice, storage.Sent); st.Unseen != 1 {
		t.Fatalf("Sent unseen = %d, want 1", st.Unseen)
	}

	// carol's session marks her copy; the event for alice's Sent copy must
	// not carry carol's session as origin, or it would be filtered.
	markSeen(t, s, storage.WithOrigin(context.Background(), storage.Origin{Session: 1}), carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[carol] != storage.TrackRead {
		t.Fatalf("after carol read: %v", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen after everyone read it")
	}
	if st := mustMailbox(t, s, alice, storage.Sent); st.Unseen != 0 {
		t.Fatalf("Sent unseen = %d, want 0", st.Unseen)
	}
	var found bool
	for _, ev := range events.Snapshot() {
		if ev.Kind == storage.EventFlags && ev.User == alice && ev.MailboxID == res.Sent.MailboxID && ev.UID == res.Sent.UID {
			found = true
			if !ev.Origin.IsZero() || !slices.Contains(ev.Flags, imap.FlagSeen) {
				t.Errorf("Sent copy event %+v: want \\Seen and no origin", ev)
			}
		}
	}
	if !found {
		t.Fatal("no EventFlags for the Sent copy")
	}
}

func trackingUnreadCopyExpungedCountsAsDeleted(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	res := submit(t, s, "ignored", bob, carol)
	expunge(t, s, bob, res.Copies[bob])
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackDeleted || got[carol] != storage.TrackUnread {
		t.Fatalf("after bob deleted his copy: %v", got)
	}
	if isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy \\Seen while carol is pending")
	}
	markSeen(t, s, context.Background(), carol, res.Copies[carol])
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen once nobody is pending")
	}
	// A read copy deleted later stays "read".
	expunge(t, s, carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[carol] != storage.TrackRead {
		t.Fatalf("carol's read copy deleted: %v", got)
	}
}

func trackingExpiredCopySettlesTheSentCopy(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	events := Listen(s)
	raw := []byte(simpleMessage("old news"))
	old := time.Now().Add(-48 * time.Hour)
	res, err := s.Deliver(context.Background(), &storage.Delivery{
		Sender:     alice,
		SentCopy:   &storage.NewMessage{Raw: raw, InternalDate: old},
		Recipients: []string{bob},
		Copy:       &storage.NewMessage{Raw: raw, InternalDate: old},
		MessageID:  "<old@example.com>",
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.ExpireUnread(context.Background(), time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expire: %d, %v; want 1", n, err)
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackExpired {
		t.Fatalf("after expiry: %v", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen after the only recipient's copy expired")
	}
	if st := mustMailbox(t, s, bob, storage.Inbox); st.Messages != 0 || st.Unseen != 0 {
		t.Fatalf("bob's INBOX after expiry: %+v", st)
	}
	if st := mustMailbox(t, s, alice, storage.Sent); st.Messages != 1 {
		t.Fatalf("the sender's old unread copy in Sent was touched: %+v", st)
	}
	var expunged bool
	for _, ev := range events.Snapshot() {
		if ev.Kind == storage.EventExpunge && ev.User == bob && ev.UID == res.Copies[bob].UID {
			expunged = true
		}
	}
	if !expunged {
		t.Fatal("no EventExpunge for the expired copy")
	}
}

func trackingDeletedUsersSettleTheirPart(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	ctx := context.Background()
	res := submit(t, s, "farewell", bob, carol)
	markSeen(t, s, ctx, carol, res.Copies[carol])
	if err := s.DeleteUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackDeleted {
		t.Fatalf("bob deleted with his copy unread: %v", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen once the last pending recipient was deleted")
	}
	// The sender goes: the recipients' tracked copies must not trip anything.
	res2 := submit(t, s, "last words", carol)
	if err := s.DeleteUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	markSeen(t, s, ctx, carol, res2.Copies[carol])
	if _, err := s.SentStatus(ctx, alice); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("sent status of a deleted user: %v", err)
	}
}

func trackingSentStatusListsOnlyTheUsersOwn(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	ctx := context.Background()
	first := submit(t, s, "one", bob)
	second := submit(t, s, "two", carol)
	list, err := s.SentStatus(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != first.TrackingID || list[1].ID != second.TrackingID {
		t.Fatalf("alice's list %+v", list)
	}
	if list[0].MessageID != "<one@example.com>" || list[0].Subject != "one" || list[0].Date.IsZero() {
		t.Fatalf("record %+v", list[0])
	}
	if !list[0].Recipients[0].Pending() {
		t.Fatalf("bob should be pending: %+v", list[0].Recipients)
	}
	if list, err := s.SentStatus(ctx, bob); err != nil || len(list) != 0 {
		t.Fatalf("bob sent nothing: %+v %v", list, err)
	}
	if _, err := s.SentStatus(ctx, "nobody@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

func trackingInboundMailNotTracked(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	res, err := s.Deliver(context.Background(), &storage.Delivery{
		Recipients: []string{bob},
		Copy:       &storage.NewMessage{Raw: []byte(simpleMessage("notice"))},
		Source:     storage.SourceSystem,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.TrackingID != 0 {
		t.Fatalf("system mail got tracking record %d", res.TrackingID)
	}
}

func trackingSurvivesReopen(t *testing.T, b Backend) {
	s, path := b.New(t)
	for _, u := range []string{alice, bob} {
		mustCreateUser(t, s, u)
	}
	res := submit(t, s, "durable", bob)
	s = b.reopen(t, s, path)
	markSeen(t, s, context.Background(), bob, res.Copies[bob])
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("tracking lost across a reopen")
	}
}

// sentBody returns the raw Sent copy, as a client would FETCH it.
func sentBody(t *testing.T, s storage.Store, a *storage.Appended) []byte {
	t.Helper()
	return loadOne(t, s, alice, a.MailboxID, a.UID).Body
}

func trackingAppendOfTheServersSentCopyReturnsIt(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	res := submit(t, s, "twice", bob)
	raw := sentBody(t, s, res.Sent)
	events := Listen(s)
	// Thunderbird appends its copy with \Seen; that must not mark the
	// tracked copy read either.
	a, err := s.Append(context.Background(), alice, storage.Sent, &storage.NewMessage{Raw: raw, Flags: []imap.Flag{imap.FlagSeen}})
	if err != nil {
		t.Fatal(err)
	}
	if *a != *res.Sent {
		t.Fatalf("APPEND gave %+v, want the server's copy %+v", a, res.Sent)
	}
	if st := mustMailbox(t, s, alice, storage.Sent); st.Messages != 1 || st.Unseen != 1 {
		t.Fatalf("Sent %+v: want one unread message", st)
	}
	if evs := events.Snapshot(); len(evs) != 0 {
		t.Fatalf("a merged APPEND published %v", evs)
	}
}

func trackingAppendWithAnotherUsersMessageIDStored(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	res := submit(t, s, "not yours", bob)
	raw := sentBody(t, s, res.Sent)
	a := mustAppend(t, s, bob, storage.Sent, string(raw))
	if st := mustMailbox(t, s, bob, storage.Sent); st.Messages != 1 || a.MailboxID != st.ID {
		t.Fatalf("bob's Sent %+v after APPEND %+v", st, a)
	}
	if st := mustMailbox(t, s, alice, storage.Sent); st.Messages != 1 {
		t.Fatalf("alice's Sent changed: %+v", st)
	}
}

func trackingAppendWithoutMessageIDNeverMerged(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	raw := "From: alice@example.com\r\nSubject: no id\r\n\r\nbody\r\n"
	a1 := mustAppend(t, s, alice, storage.Sent, raw)
	a2 := mustAppend(t, s, alice, storage.Sent, raw)
	if a1.UID == a2.UID {
		t.Fatalf("two APPENDs without Message-ID merged into UID %d", a1.UID)
	}
}

func trackingExpungedSentCopyNotReturned(t *testing.T, b Backend) {
	s := trackingStore(t, b)
	res := submit(t, s, "gone", bob)
	raw := string(sentBody(t, s, res.Sent))
	expunge(t, s, alice, res.Sent)
	if a := mustAppend(t, s, alice, storage.Sent, raw); a.UID == res.Sent.UID {
		t.Fatal("APPEND returned an expunged UID")
	}
}

// trackingStore opens a store with alice, bob and carol.
func trackingStore(t *testing.T, b Backend) storage.Store {
	t.Helper()
	s, _ := b.withUsers(t, alice, bob, carol)
	return s
}
