package boltstore

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// TestExportMatchesStoreReads walks a store with several users, a
// re-created mailbox (UIDVALIDITY and UIDNEXT off their defaults),
// flagged and seen messages and a deleted-but-subscribed name, and checks
// that what Export reports is what the Store's reads answer, and that the
// export leaves the file as it was.
func TestExportMatchesStoreReads(t *testing.T) {
	ctx := context.Background()
	s, path := openTestStore(t)
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	mustAppend(t, s, "alice@example.com", "INBOX", simpleMessage("one"), imap.FlagSeen)
	mustAppend(t, s, "alice@example.com", "INBOX", simpleMessage("two"), imap.FlagFlagged, "$Work")
	if err := s.CreateMailbox(ctx, "alice@example.com", "Projects"); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "alice@example.com", "Projects", simpleMessage("three"))
	mustAppend(t, s, "alice@example.com", "Projects", simpleMessage("four"))
	if err := s.DeleteMailbox(ctx, "alice@example.com", "Projects"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "alice@example.com", "Projects"); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "alice@example.com", "Projects", simpleMessage("five"))
	if err := s.CreateMailbox(ctx, "bob@example.com", "Old"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, "bob@example.com", "Old", true); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, "bob@example.com", "Old"); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var users []string
	boxes := map[string][]storage.ExportedMailbox{}
	msgs := map[string]map[uint64][]storage.ExportedMessage{}
	subs := map[string][]string{}
	err = s.Export(ctx, storage.ExportVisitor{
		User: func(u *storage.ExportedUser) error {
			users = append(users, u.Record.Address)
			subs[u.Record.Address] = u.Subscriptions
			if len(u.Record.PasswordHash) == 0 {
				t.Errorf("user %s exported without its password hash", u.Record.Address)
			}
			msgs[u.Record.Address] = map[uint64][]storage.ExportedMessage{}
			return nil
		},
		Mailbox: func(m *storage.ExportedMailbox) error {
			boxes[m.User] = append(boxes[m.User], *m)
			return nil
		},
		Message: func(m *storage.ExportedMessage) error {
			msgs[m.User][m.Mailbox] = append(msgs[m.User][m.Mailbox], *m)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice@example.com", "bob@example.com"}; !reflect.DeepEqual(users, want) {
		t.Fatalf("exported users %q, want %q", users, want)
	}
	for _, user := range users {
		list, err := s.Mailboxes(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != len(boxes[user]) {
			t.Fatalf("%s: exported %d mailboxes, Mailboxes has %d", user, len(boxes[user]), len(list))
		}
		byID := map[uint64]storage.ExportedMailbox{}
		for _, b := range boxes[user] {
			byID[b.ID] = b
		}
		for _, mb := range list {
			eb, ok := byID[mb.ID]
			if !ok {
				t.Fatalf("%s: mailbox %s (%d) not exported", user, mb.Name, mb.ID)
			}
			st := mustMailbox(t, s, user, mb.Name)
			if eb.Name != mb.Name || eb.SpecialUse != mb.SpecialUse || eb.UIDValidity != mb.UIDValidity ||
				imap.UID(eb.UIDNext) != mb.UIDNext || eb.Subscribed != mb.Subscribed || eb.HighestModSeq != st.HighestModSeq {
				t.Errorf("%s: exported %+v, the store says %+v", user, eb, st)
			}
			got, err := s.Messages(ctx, user, mb.ID, mustUIDs(t, s, user, mb.ID), storage.LoadOptions{Body: true})
			if err != nil {
				t.Fatal(err)
			}
			em := msgs[user][mb.ID]
			if len(em) != len(got) {
				t.Fatalf("%s/%s: exported %d messages, the store has %d", user, mb.Name, len(em), len(got))
			}
			for i, m := range got {
				e := em[i]
				if e.UID != m.UID || !reflect.DeepEqual(e.Flags, m.Flags) || !e.InternalDate.Equal(m.InternalDate) ||
					e.ModSeq != m.ModSeq || !bytes.Equal(e.Body, m.Body) {
					t.Errorf("%s/%s: exported message %d %v %v modseq %d, the store says %d %v %v modseq %d",
						user, mb.Name, e.UID, e.Flags, e.InternalDate, e.ModSeq, m.UID, m.Flags, m.InternalDate, m.ModSeq)
				}
			}
		}
		want, err := s.Subscriptions(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if subs[user] != nil && !reflect.DeepEqual(subs[user], want) {
			t.Errorf("%s: exported subscriptions %q, the store says %q", user, subs[user], want)
		}
	}
	if !containsStr(subs["bob@example.com"], "Old") {
		t.Errorf("bob's subscription of the deleted Old was not exported: %q", subs["bob@example.com"])
	}
	for _, b := range boxes["alice@example.com"] {
		if b.Name == "Projects" && b.UIDNext != 4 {
			t.Errorf("re-created Projects exported with UIDNEXT %d, want 4", b.UIDNext)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("Export changed the database file")
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
