package storagetest

import (
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

func newUserHasTheFourSpecialUseMailboxes(t *testing.T, b Backend) {
	s, _ := b.New(t)
	mustCreateUser(t, s, "alice@example.com")
	list, err := s.Mailboxes(context.Background(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]imap.MailboxAttr{
		storage.Inbox: "", storage.Sent: imap.MailboxAttrSent, storage.Drafts: imap.MailboxAttrDrafts, storage.Trash: imap.MailboxAttrTrash,
	}
	if len(list) != len(want) {
		t.Fatalf("got %d mailboxes: %+v", len(list), list)
	}
	seenValidity := map[uint32]bool{}
	for _, m := range list {
		attr, ok := want[m.Name]
		if !ok || m.SpecialUse != attr {
			t.Errorf("mailbox %q special-use %q", m.Name, m.SpecialUse)
		}
		if !m.Subscribed || m.UIDNext != 1 || m.UIDValidity == 0 || m.ID == 0 {
			t.Errorf("mailbox %+v", m)
		}
		if seenValidity[m.UIDValidity] {
			t.Errorf("UIDVALIDITY %d used twice", m.UIDValidity)
		}
		seenValidity[m.UIDValidity] = true
	}
}

func protectedMailboxesCannotBeDeletedOrRenamed(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	for _, name := range []string{"INBOX", "inbox", "Sent", "Drafts", "Trash"} {
		wantErr(t, s.DeleteMailbox(ctx, "alice@example.com", name), storage.ErrProtected, "delete "+name)
		wantErr(t, s.RenameMailbox(ctx, "alice@example.com", name, "Other"), storage.ErrProtected, "rename "+name)
	}
	if got := mailboxNames(t, s, "alice@example.com"); got != "Drafts INBOX Sent Trash" {
		t.Errorf("mailboxes %q", got)
	}
	wantErr(t, s.CreateMailbox(ctx, "alice@example.com", "Archive"), nil, "create Archive")
	wantErr(t, s.RenameMailbox(ctx, "alice@example.com", "Archive", "Sent"), storage.ErrExists, "rename onto Sent")
	wantErr(t, s.RenameMailbox(ctx, "alice@example.com", "Archive", "inbox"), storage.ErrExists, "rename onto inbox")
}

func createMailboxCreatesMissingParents(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	events := Listen(s)
	if err := s.CreateMailbox(ctx, "alice@example.com", "Work/2026/Q1"); err != nil {
		t.Fatal(err)
	}
	if got := mailboxNames(t, s, "alice@example.com"); got != "Drafts INBOX Sent Trash Work Work/2026 Work/2026/Q1" {
		t.Errorf("mailboxes %q", got)
	}
	if n := len(events.Snapshot()); n != 3 {
		t.Errorf("%d events, want one EventMailboxes per created mailbox", n)
	}
	m := mustMailbox(t, s, "alice@example.com", "Work/2026/Q1")
	if m.Subscribed || m.SpecialUse != "" {
		t.Errorf("new mailbox %+v", m)
	}
	wantErr(t, s.CreateMailbox(ctx, "alice@example.com", "Work/2026"), storage.ErrExists, "existing")
	wantErr(t, s.CreateMailbox(ctx, "alice@example.com", "inbox"), storage.ErrExists, "inbox")
	for _, bad := range []string{"", "/Work", "Work/", "A//B", "Star*", "Per%cent", "tab\there", strings.Repeat("x", 1001), "bad\xffutf8"} {
		wantErr(t, s.CreateMailbox(ctx, "alice@example.com", bad), storage.ErrInvalid, "name "+bad)
	}
	wantErr(t, s.CreateMailbox(ctx, "nobody@example.com", "X"), storage.ErrNotFound, "unknown user")
}

func inboxMatchedCaseInsensitively(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	a := mustAppend(t, s, "alice@example.com", "inbox", simpleMessage("one"))
	if m := mustMailbox(t, s, "alice@example.com", "InBoX"); m.ID != a.MailboxID || m.Name != storage.Inbox || m.Messages != 1 {
		t.Errorf("InBoX resolved to %+v", m)
	}
	if err := s.CreateMailbox(ctx, "alice@example.com", "inbox/Lists"); err != nil {
		t.Fatal(err)
	}
	if m := mustMailbox(t, s, "alice@example.com", "INBOX/Lists"); m.Name != "INBOX/Lists" {
		t.Errorf("child of INBOX stored as %q", m.Name)
	}
	// Other names are exact.
	if _, err := s.Mailbox(ctx, "alice@example.com", "sent"); err == nil {
		t.Error(`"sent" resolved to Sent`)
	}
}

func renameMovesChildrenAndKeepsIdentity(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	for _, n := range []string{"Work/Old", "Work/Old/Deep", "Work/Older"} {
		if err := s.CreateMailbox(ctx, "alice@example.com", n); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, s, "alice@example.com", "Work/Old/Deep", simpleMessage("deep"))
	before := mustMailbox(t, s, "alice@example.com", "Work/Old/Deep")
	events := Listen(s)
	if err := s.RenameMailbox(ctx, "alice@example.com", "Work/Old", "Archive/2025"); err != nil {
		t.Fatal(err)
	}
	if got := mailboxNames(t, s, "alice@example.com"); got != "Archive Archive/2025 Archive/2025/Deep Drafts INBOX Sent Trash Work Work/Older" {
		t.Errorf("mailboxes after rename: %q", got)
	}
	after := mustMailbox(t, s, "alice@example.com", "Archive/2025/Deep")
	if after.ID != before.ID || after.UIDValidity != before.UIDValidity || after.UIDNext != before.UIDNext || after.Messages != 1 {
		t.Errorf("renamed child changed: before %+v after %+v", before, after)
	}
	if n := len(events.Snapshot()); n != 3 {
		t.Errorf("%d events, want 3 (two renamed, one parent created)", n)
	}
	wantErr(t, s.RenameMailbox(ctx, "alice@example.com", "Work/Old", "X"), storage.ErrNotFound, "old name")
	wantErr(t, s.RenameMailbox(ctx, "alice@example.com", "Archive", "Archive/Sub"), storage.ErrInvalid, "into itself")
	wantErr(t, s.RenameMailbox(ctx, "alice@example.com", "Work", "Archive"), storage.ErrExists, "onto existing")
}

func renameRefusedWhenAChildWouldCollide(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	for _, n := range []string{"A/X", "B/X"} {
		if err := s.CreateMailbox(ctx, "alice@example.com", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteMailbox(ctx, "alice@example.com", "B"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RenameMailbox(ctx, "alice@example.com", "A", "B"), storage.ErrExists, "child collision")
	if got := mailboxNames(t, s, "alice@example.com"); got != "A A/X B/X Drafts INBOX Sent Trash" {
		t.Errorf("a refused rename changed names: %q", got)
	}
}

func deleteMailboxKeepsChildren(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	if err := s.CreateMailbox(ctx, "alice@example.com", "Lists/Go"); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "alice@example.com", "Lists", simpleMessage("x"))
	lists := mustMailbox(t, s, "alice@example.com", "Lists")
	events := Listen(s)
	if err := s.DeleteMailbox(ctx, "alice@example.com", "Lists"); err != nil {
		t.Fatal(err)
	}
	if got := mailboxNames(t, s, "alice@example.com"); got != "Drafts INBOX Lists/Go Sent Trash" {
		t.Errorf("mailboxes %q", got)
	}
	evs := events.Snapshot()
	if len(evs) != 1 || evs[0].Kind != storage.EventMailboxes || evs[0].MailboxID != lists.ID {
		t.Errorf("events %+v, want one EventMailboxes for the deleted mailbox", evs)
	}
	_, err := s.UIDs(ctx, "alice@example.com", lists.ID)
	wantErr(t, err, storage.ErrNotFound, "deleted mailbox by ID")
	wantErr(t, s.DeleteMailbox(ctx, "alice@example.com", "Lists"), storage.ErrNotFound, "second delete")
}

func subscriptionStored(t *testing.T, b Backend) {
	s, path := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	if err := s.CreateMailbox(ctx, "alice@example.com", "News"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, "alice@example.com", "News", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, "alice@example.com", "Trash", false); err != nil {
		t.Fatal(err)
	}
	s = b.reopen(t, s, path)
	if m := mustMailbox(t, s, "alice@example.com", "News"); !m.Subscribed {
		t.Error("News not subscribed")
	}
	if m := mustMailbox(t, s, "alice@example.com", "Trash"); m.Subscribed {
		t.Error("Trash still subscribed")
	}
	wantErr(t, s.SetSubscribed(ctx, "alice@example.com", "Nope", true), storage.ErrNotFound, "unknown mailbox")
}
