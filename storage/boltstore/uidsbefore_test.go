package boltstore

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

func TestUIDsBeforePagesNewestFirst(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "a@example.com")
	for range 7 {
		mustAppend(t, s, "a@example.com", storage.Inbox, simpleMessage("x"))
	}
	mb := mustMailbox(t, s, "a@example.com", storage.Inbox)
	// UID 4 gone: a page skips it, never returns it.
	if _, err := s.StoreFlags(ctx, "a@example.com", mb.ID, []imap.UID{4}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, "a@example.com", mb.ID, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		before imap.UID
		limit  int
		want   []imap.UID
	}{
		{0, 3, []imap.UID{7, 6, 5}},
		{5, 3, []imap.UID{3, 2, 1}},
		{4, 10, []imap.UID{3, 2, 1}},
		{1, 10, []imap.UID{}},
		{100, 2, []imap.UID{7, 6}},
	} {
		got, err := s.UIDsBefore(ctx, "a@example.com", mb.ID, c.before, c.limit)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("UIDsBefore(%d, %d) = %v, %v; want %v", c.before, c.limit, got, err, c.want)
		}
	}
	if _, err := s.UIDsBefore(ctx, "a@example.com", mb.ID, 0, 0); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("limit 0: %v, want ErrInvalid", err)
	}
	if _, err := s.UIDsBefore(ctx, "b@example.com", mb.ID, 0, 5); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("another user's mailbox: %v, want ErrNotFound", err)
	}
}
