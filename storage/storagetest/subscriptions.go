package storagetest

import (
	"context"
	"slices"
	"testing"

	"github.com/pochta/pochta/storage"
)

// subscriptionsByName: RFC 3501 6.3.6 (the server must not remove a
// subscribed name because its mailbox is gone) and RFC 5258 3 (such a name
// is listed \Subscribed \NonExistent): a subscription outlives DELETE and a
// restart, comes back with a mailbox created again under the name, follows
// RENAME, and UNSUBSCRIBE removes the name of a deleted mailbox.
func subscriptionsByName(t *testing.T, b Backend) {
	s, path := b.New(t)
	ctx := context.Background()
	const alice = "alice@example.com"
	mustCreateUser(t, s, alice)
	subs := func(want ...string) {
		t.Helper()
		got, err := s.Subscriptions(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Subscriptions = %q, want %q", got, want)
		}
	}
	subs("Drafts", "INBOX", "Sent", "Trash")
	for _, name := range []string{"Gone", "Old", "Old/Child"} {
		if err := s.CreateMailbox(ctx, alice, name); err != nil {
			t.Fatal(err)
		}
		if err := s.SetSubscribed(ctx, alice, name, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteMailbox(ctx, alice, "Gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, alice, "Old", "New"); err != nil {
		t.Fatal(err)
	}
	s = b.reopen(t, s, path)
	subs("Drafts", "Gone", "INBOX", "New", "New/Child", "Sent", "Trash")
	if m := mustMailbox(t, s, alice, "New/Child"); !m.Subscribed {
		t.Error("renamed New/Child not subscribed")
	}

	if err := s.CreateMailbox(ctx, alice, "Gone"); err != nil {
		t.Fatal(err)
	}
	if m := mustMailbox(t, s, alice, "Gone"); !m.Subscribed {
		t.Error("Gone created again is not subscribed")
	}
	if err := s.DeleteMailbox(ctx, alice, "Gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, alice, "Gone", false); err != nil {
		t.Fatalf("unsubscribe a deleted mailbox: %v", err)
	}
	subs("Drafts", "INBOX", "New", "New/Child", "Sent", "Trash")
	wantErr(t, s.SetSubscribed(ctx, alice, "Gone", false), storage.ErrNotFound, "unsubscribe a name neither existing nor subscribed")
	wantErr(t, s.SetSubscribed(ctx, alice, "Gone", true), storage.ErrNotFound, "subscribe a deleted mailbox")
}
