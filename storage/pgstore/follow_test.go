package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
)

// events collects a store's events on a channel.
func events(s storage.Store) <-chan storage.Event {
	ch := make(chan storage.Event, 1000)
	s.Listen(func(ev storage.Event) { ch <- ev })
	return ch
}

// next waits (bounded) for the next event of kind in mailbox id, skipping
// others; it fails the test after 10 s.
func next(t *testing.T, ch <-chan storage.Event, kind storage.EventKind, id uint64) storage.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Kind == kind && ev.MailboxID == id {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event of kind %v for mailbox %d within 10 s", kind, id)
		}
	}
}

// none checks that no event of kind for uid came (draining what is there).
func none(t *testing.T, ch <-chan storage.Event, kind storage.EventKind, uid imap.UID, what string) {
	t.Helper()
	for {
		select {
		case ev := <-ch:
			if ev.Kind == kind && ev.UID == uid {
				t.Errorf("%s: an extra event %+v", what, ev)
			}
		default:
			return
		}
	}
}

// Node B's listeners hear of node A's changes (a delivery, a flag change,
// an expunge) as events, each once; B's own append is announced once, not
// again when B's follower reads the feed; and a change made while B's
// follower connection is cut still arrives.
func TestNodeBHearsNodeAsChanges(t *testing.T) {
	const bob = "bob@example.com"
	ctx := context.Background()
	dsn := pgtest.New(t)
	be := postgresBackend()
	a, b := be.Open(t, dsn), be.Open(t, dsn)
	if err := a.CreateUser(ctx, bob, "secret", false); err != nil {
		t.Fatal(err)
	}
	inbox, err := b.MailboxStatus(ctx, bob, storage.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	id := inbox.ID
	evB := events(b)

	app, err := a.Append(ctx, bob, storage.Inbox, &storage.NewMessage{Raw: message("from-a")})
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, evB, storage.EventAppend, id)
	if ev.UID != app.UID || ev.User != bob || ev.ModSeq == 0 {
		t.Fatalf("B heard %+v, want the append of UID %d", ev, app.UID)
	}

	if _, err := a.StoreFlags(ctx, bob, id, []imap.UID{app.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, evB, storage.EventFlags, id)
	if ev.UID != app.UID || len(ev.Flags) != 1 || ev.Flags[0] != imap.FlagFlagged {
		t.Fatalf("B heard %+v, want UID %d \\Flagged", ev, app.UID)
	}

	own, err := b.Append(ctx, bob, storage.Inbox, &storage.NewMessage{Raw: message("from-b")})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evB, storage.EventAppend, id); ev.UID != own.UID {
		t.Fatalf("B's own append: heard %+v, want UID %d", ev, own.UID)
	}

	if _, err := a.StoreFlags(ctx, bob, id, []imap.UID{app.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Expunge(ctx, bob, id, []imap.UID{app.UID}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evB, storage.EventExpunge, id); ev.UID != app.UID {
		t.Fatalf("B heard %+v, want the expunge of UID %d", ev, app.UID)
	}
	none(t, evB, storage.EventAppend, own.UID, "B's own append")

	// A delivery while B's follower connection is cut still arrives.
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pochta-follower' AND datname = current_database()").Scan(&killed); err != nil || killed != 2 {
		t.Fatalf("terminated %d follower connections (err %v), want A's and B's", killed, err)
	}
	late, err := a.Append(ctx, bob, storage.Inbox, &storage.NewMessage{Raw: message("while-cut")})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evB, storage.EventAppend, id); ev.UID != late.UID {
		t.Fatalf("after the cut B heard %+v, want UID %d", ev, late.UID)
	}
}
