package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/pgstore"
)

// events collects what a store's Listen delivers.
func events(s storage.Store) <-chan storage.Event {
	ch := make(chan storage.Event, 1000)
	s.Listen(func(ev storage.Event) { ch <- ev })
	return ch
}

// expect waits (up to 10s) for an event matching want and returns it,
// failing on any other event; alice's (the sender's Sent copies) and
// "account changes may have been missed" (after each (re)connection) are
// not looked at.
func expect(t *testing.T, ch <-chan storage.Event, what string, want func(storage.Event) bool) storage.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.User == "alice@example.com" || ev.Kind == storage.EventAccount && ev.User == "" {
				continue
			}
			if want(ev) {
				return ev
			}
			t.Fatalf("waiting for %s: unexpected event %+v", what, ev)
		case <-timeout:
			t.Fatalf("no %s within 10s", what)
		}
	}
}

func deliverTo(t *testing.T, s storage.Store, subj string, rcpts ...string) *storage.DeliveryResult {
	t.Helper()
	res, err := s.Deliver(context.Background(), &storage.Delivery{
		Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: message(subj)},
		Recipients: rcpts, Copy: &storage.NewMessage{Raw: message(subj)},
		From: "alice@example.com", Source: storage.SourceUser, MessageID: "<" + subj + "@example.com>", Subject: subj,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func inbox(t *testing.T, s storage.Store, user string) uint64 {
	t.Helper()
	m, err := s.Mailbox(context.Background(), user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return m.ID
}

// Node B's listeners see node A's delivery, flag change, expunge and queue
// entry, each once; B's own commits are announced once too (not echoed back
// from the feed).
func TestListenSeesOtherNode(t *testing.T) {
	a, b := twoNodes(t, "alice@example.com", "bob@example.com")
	ctx := context.Background()
	box := inbox(t, a, "bob@example.com")
	evB := events(b)

	deliverTo(t, a, "one", "bob@example.com")
	app := expect(t, evB, "A's delivery", func(ev storage.Event) bool { return ev.Kind == storage.EventAppend })
	if app.MailboxID != box || app.User != "bob@example.com" || app.UID == 0 {
		t.Fatalf("append event %+v", app)
	}
	if _, err := a.StoreFlags(ctx, "bob@example.com", box, []imap.UID{app.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	fl := expect(t, evB, "A's flag change", func(ev storage.Event) bool { return ev.Kind == storage.EventFlags })
	if fl.UID != app.UID || !slices.Contains(fl.Flags, imap.FlagFlagged) {
		t.Fatalf("flags event %+v", fl)
	}
	// B's own change: announced once, by B's commit.
	if _, err := b.StoreFlags(ctx, "bob@example.com", box, []imap.UID{app.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	expect(t, evB, "B's own flag change", func(ev storage.Event) bool {
		return ev.Kind == storage.EventFlags && slices.Contains(ev.Flags, imap.FlagDeleted)
	})
	if gone, err := a.Expunge(ctx, "bob@example.com", box, []imap.UID{app.UID}); err != nil || len(gone) != 1 {
		t.Fatalf("expunge: %v, %v", gone, err)
	}
	ex := expect(t, evB, "A's expunge", func(ev storage.Event) bool { return ev.Kind == storage.EventExpunge })
	if ex.UID != app.UID {
		t.Fatalf("expunge event %+v", ex)
	}
	if _, err := a.Deliver(ctx, &storage.Delivery{
		Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: message("out")},
		From: "alice@example.com", Source: storage.SourceUser, MessageID: "<out@example.com>", Subject: "out",
		External: []string{"carol@elsewhere.example"}, RelayCopy: &storage.NewMessage{Raw: message("out")},
	}); err != nil {
		t.Fatal(err)
	}
	q := expect(t, evB, "A's queue entry", func(ev storage.Event) bool { return ev.Kind == storage.EventQueued })
	if q.QueueID == 0 {
		t.Fatalf("queue event %+v", q)
	}
	// Nothing was announced twice: a last delivery is the next event.
	deliverTo(t, a, "last", "bob@example.com")
	last := expect(t, evB, "the last delivery", func(ev storage.Event) bool { return ev.Kind == storage.EventAppend })
	if last.UID <= app.UID {
		t.Fatalf("last append %+v after %+v", last, app)
	}
	select {
	case ev := <-evB:
		t.Fatalf("unexpected extra event %+v", ev)
	default:
	}
}

// When B's listener connection is killed while A writes, B catches up from
// the feed on reconnecting: every delivery announced, each once.
func TestListenCatchesUpAfterListenerKilled(t *testing.T) {
	a, b, dsn := twoNodesAt(t, "alice@example.com", "bob@example.com")
	ctx := context.Background()
	evB := events(b)
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	const n = 6
	seen := map[imap.UID]int{}
	for i := range n {
		if i%2 == 0 {
			if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", pgstore.ListenerAppName); err != nil {
				t.Fatal(err)
			}
		}
		deliverTo(t, a, fmt.Sprintf("m%d", i), "bob@example.com")
	}
	for len(seen) < n {
		ev := expect(t, evB, "the deliveries", func(ev storage.Event) bool {
			return ev.Kind == storage.EventAppend || ev.Kind == storage.EventMailboxes
		})
		if ev.Kind == storage.EventAppend {
			seen[ev.UID]++
		}
	}
	// A final delivery after everything: no duplicate came before it.
	deliverTo(t, a, "last", "bob@example.com")
	for {
		ev := expect(t, evB, "the last delivery", func(ev storage.Event) bool {
			return ev.Kind == storage.EventAppend || ev.Kind == storage.EventMailboxes
		})
		if ev.Kind != storage.EventAppend {
			continue
		}
		if seen[ev.UID] > 0 {
			t.Fatalf("delivery %d announced twice", ev.UID)
		}
		break
	}
}

// B is told of A's mailbox create, rename and delete, and of its own once.
func TestListenSeesOtherNodesMailboxes(t *testing.T) {
	a, b := twoNodes(t, "bob@example.com")
	ctx := context.Background()
	evB := events(b)
	isList := func(ev storage.Event) bool { return ev.Kind == storage.EventMailboxes }
	if err := a.CreateMailbox(ctx, "bob@example.com", "Work"); err != nil {
		t.Fatal(err)
	}
	work, err := a.Mailbox(ctx, "bob@example.com", "Work")
	if err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, evB, "A's create", isList); ev.MailboxID != work.ID {
		t.Fatalf("create event %+v, want mailbox %d", ev, work.ID)
	}
	if err := b.RenameMailbox(ctx, "bob@example.com", "Work", "Play"); err != nil {
		t.Fatal(err)
	}
	expect(t, evB, "B's own rename", isList)
	if err := a.DeleteMailbox(ctx, "bob@example.com", "Play"); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, evB, "A's delete", isList); ev.MailboxID != work.ID {
		t.Fatalf("delete event %+v, want mailbox %d", ev, work.ID)
	}
	// The rename was not announced a second time: a last delivery is next.
	if err := a.CreateMailbox(ctx, "bob@example.com", "Last"); err != nil {
		t.Fatal(err)
	}
	last, err := a.Mailbox(ctx, "bob@example.com", "Last")
	if err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, evB, "A's last create", isList); ev.MailboxID != last.ID {
		t.Fatalf("event %+v, want the create of mailbox %d", ev, last.ID)
	}
}

// Two nodes appending to one INBOX at once: node B's listeners (its IMAP
// sessions) learn of every new UID exactly once and in ascending order. A
// session cannot take a UID below one it has already announced, so B must
// announce A's lower UID, committed just before B's own, ahead of B's.
func TestListenAnnouncesNewUIDsInOrderAcrossNodes(t *testing.T) {
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
	evB := events(b)
	const each = 40
	errs := make(chan error, 2)
	for n, s := range []storage.Store{a, b} {
		go func() {
			for i := range each {
				if _, err := s.Append(ctx, bob, storage.Inbox, &storage.NewMessage{Raw: message(fmt.Sprintf("n%d-%d", n, i))}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var uids []imap.UID
	timeout := time.After(20 * time.Second)
	for len(uids) < 2*each {
		select {
		case ev := <-evB:
			if ev.Kind == storage.EventAppend && ev.MailboxID == inbox.ID {
				uids = append(uids, ev.UID)
			}
		case <-timeout:
			t.Fatalf("B announced %d of %d appends: %v", len(uids), 2*each, uids)
		}
	}
	for i := 1; i < len(uids); i++ {
		if uids[i] <= uids[i-1] {
			t.Fatalf("B announced UID %d after %d (a session would drop it): %v", uids[i], uids[i-1], uids)
		}
	}
}

// When bob reads alice's message on node B, alice's listeners on node A
// hear of the read tracking change (her web page's "not delivered" list),
// once; B's own listeners hear of it once too, not echoed.
func TestListenSeesOtherNodesTracking(t *testing.T) {
	a, b := twoNodes(t, "alice@example.com", "bob@example.com")
	ctx := context.Background()
	evA, evB := events(a), events(b)
	res := deliverTo(t, a, "read me", "bob@example.com")
	box := inbox(t, b, "bob@example.com")
	app := expect(t, evB, "A's delivery", func(ev storage.Event) bool { return ev.Kind == storage.EventAppend })
	if _, err := b.StoreFlags(ctx, "bob@example.com", box, []imap.UID{app.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	tracking := func(ch <-chan storage.Event, node string) storage.Event {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-ch:
				if ev.Kind == storage.EventTracking {
					return ev
				}
			case <-timeout:
				t.Fatalf("node %s: no read-tracking event within 10s", node)
			}
		}
	}
	for _, n := range []struct {
		name string
		ch   <-chan storage.Event
	}{{"A", evA}, {"B", evB}} {
		ev := tracking(n.ch, n.name)
		if ev.User != "alice@example.com" || ev.UID != res.Sent.UID || ev.TrackingID != res.TrackingID {
			t.Fatalf("node %s: tracking event %+v, want alice's Sent UID %d", n.name, ev, res.Sent.UID)
		}
	}
	// Each once: after one more delivery on B, seen by both, no second
	// tracking event was in between.
	deliverTo(t, b, "after", "bob@example.com")
	for _, n := range []struct {
		name string
		ch   <-chan storage.Event
	}{{"A", evA}, {"B", evB}} {
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case ev := <-n.ch:
				if ev.Kind == storage.EventTracking {
					t.Fatalf("node %s: a second tracking event %+v", n.name, ev)
				}
				if ev.Kind == storage.EventAppend && ev.User == "bob@example.com" {
					break wait
				}
			case <-timeout:
				t.Fatalf("node %s: the last delivery was not announced", n.name)
			}
		}
	}
}

// A password change and a user's deletion on node A reach node B's
// listeners (B drops its cached logins of the user on them), each once.
func TestListenSeesOtherNodesAccountChanges(t *testing.T) {
	a, b := twoNodes(t, "alice@example.com", "bob@example.com")
	ctx := context.Background()
	evB := events(b)
	account := func(what string) storage.Event {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-evB:
				if ev.Kind == storage.EventAccount && ev.User != "" {
					return ev
				}
			case <-timeout:
				t.Fatalf("node B: no account event for %s within 10s", what)
			}
		}
	}
	// Once B is listening (it announces A's delivery):
	deliverTo(t, a, "first", "bob@example.com")
	expect(t, evB, "A's delivery", func(ev storage.Event) bool { return ev.Kind == storage.EventAppend })
	if err := a.SetPassword(ctx, "bob@example.com", "new-secret"); err != nil {
		t.Fatal(err)
	}
	if ev := account("the password change"); ev.User != "bob@example.com" || ev.Deleted {
		t.Fatalf("account event %+v, want bob's password change", ev)
	}
	if err := a.DeleteUser(ctx, "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if ev := account("the deletion"); ev.User != "bob@example.com" || !ev.Deleted {
		t.Fatalf("account event %+v, want bob deleted", ev)
	}
	// B's own change is announced once, not echoed from its notification.
	if err := b.SetPassword(ctx, "alice@example.com", "another"); err != nil {
		t.Fatal(err)
	}
	if ev := account("B's own change"); ev.User != "alice@example.com" {
		t.Fatalf("account event %+v", ev)
	}
	deliverTo(t, a, "after", "alice@example.com")
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-evB:
			if ev.Kind == storage.EventAccount {
				t.Fatalf("a second account event %+v", ev)
			}
			if ev.Kind == storage.EventAppend && ev.Origin.IsZero() {
				return
			}
		case <-timeout:
			t.Fatal("the last delivery was not announced on B")
		}
	}
}

// A password change made while B's listener connection is down reaches B
// either itself or as "account changes may have been missed" (User empty,
// every cached login dropped) once B reconnects: B never keeps a cached
// login of the old password unawares.
func TestListenAccountChangeDuringAnOutage(t *testing.T) {
	a, b, dsn := twoNodesAt(t, "alice@example.com", "bob@example.com")
	ctx := context.Background()
	evB := events(b)
	deliverTo(t, a, "first", "bob@example.com")
	expect(t, evB, "A's delivery", func(ev storage.Event) bool { return ev.Kind == storage.EventAppend })
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// Terminated and gone (the 5 s timeout waits for it) before the change.
	var killed int
	if err := admin.QueryRow(ctx, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = $1", pgstore.ListenerAppName).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminating the listeners: %d, %v", killed, err)
	}
	if err := a.SetPassword(ctx, "bob@example.com", "new-secret"); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-evB:
			if ev.Kind == storage.EventAccount && (ev.User == "" || ev.User == "bob@example.com") {
				return
			}
		case <-timeout:
			t.Fatal("node B was told neither of the password change nor that it may have missed it")
		}
	}
}
