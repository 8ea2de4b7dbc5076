package boltstore

import (
	"context"
	"errors"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

// pendingOf lists the pending recipients of a record.
func pendingOf(m storage.SentMessage) []string {
	var out []string
	for _, r := range m.Recipients {
		if r.Pending() {
			out = append(out, r.Address)
		}
	}
	return out
}

func TestSentStatusForFindsThePagesRecordsOnly(t *testing.T) {
	s := trackingStore(t)
	ctx := context.Background()
	first := submit(t, s, "first", bob)
	second := submit(t, s, "second", bob, carol)
	third := submit(t, s, "third", carol)
	markSeen(t, s, ctx, bob, second.Copies[bob])

	// A page of two of the three, and a UID that holds nothing.
	got, err := s.SentStatusFor(ctx, alice, second.Sent.MailboxID, []imap.UID{third.Sent.UID, second.Sent.UID, 999})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got records for %d UIDs, want 2 (the page's two messages): %+v", len(got), got)
	}
	if m := got[second.Sent.UID]; m.ID != second.TrackingID || m.Subject != "second" || len(pendingOf(m)) != 1 || pendingOf(m)[0] != carol {
		t.Errorf("second: %+v, want record %d with only carol pending", m, second.TrackingID)
	}
	if m := got[third.Sent.UID]; m.ID != third.TrackingID || len(pendingOf(m)) != 1 || pendingOf(m)[0] != carol {
		t.Errorf("third: %+v, want record %d with carol pending", m, third.TrackingID)
	}
	if _, ok := got[first.Sent.UID]; ok {
		t.Error("the first message, not on the page, was returned")
	}
}

func TestSentStatusForIgnoresCopiesOfOthersMessages(t *testing.T) {
	s := trackingStore(t)
	ctx := context.Background()
	res := submit(t, s, "to bob", bob)
	// bob's unread INBOX copy is in bob's "tracked" index too; it is not
	// a message bob sent.
	copyOf := res.Copies[bob]
	got, err := s.SentStatusFor(ctx, bob, copyOf.MailboxID, []imap.UID{copyOf.UID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("bob's copy of alice's message came back as bob's own sent message: %+v", got)
	}
	// Nor does another user see alice's Sent record by asking with her IDs.
	got, err = s.SentStatusFor(ctx, carol, res.Sent.MailboxID, []imap.UID{res.Sent.UID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("carol got alice's record: %+v", got)
	}
	if _, err := s.SentStatusFor(ctx, "nobody@example.com", res.Sent.MailboxID, []imap.UID{res.Sent.UID}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown user: %v, want ErrNotFound", err)
	}
}

func TestSentStatusForFollowsTheSettledState(t *testing.T) {
	s := trackingStore(t)
	ctx := context.Background()
	res := submit(t, s, "read it", bob)
	markSeen(t, s, ctx, bob, res.Copies[bob])
	got, err := s.SentStatusFor(ctx, alice, res.Sent.MailboxID, []imap.UID{res.Sent.UID})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := got[res.Sent.UID]
	if !ok {
		t.Fatal("a read message's record is gone while its Sent copy exists")
	}
	if p := pendingOf(m); len(p) != 0 || m.Recipients[0].State != storage.TrackRead {
		t.Fatalf("after bob read it: %+v, want bob read and nobody pending", m.Recipients)
	}
}
