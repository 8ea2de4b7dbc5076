package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

// durableAcrossReopen: every write that returned nil is there after the
// store is closed and opened again, exactly as it was read before.
func durableAcrossReopen(t *testing.T, b Backend) {
	s, location := b.withUsers(t, alice, bob, carol)
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, alice, "Projects/X"); err != nil {
		t.Fatal(err)
	}
	a := mustAppend(t, s, alice, "Projects/X", NestedMessage, imap.FlagFlagged)
	if _, err := s.StoreFlags(ctx, alice, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen, "Keyword"}); err != nil {
		t.Fatal(err)
	}
	gone := mustAppend(t, s, alice, "Projects/X", simpleMessage("gone"), imap.FlagDeleted)
	if _, err := s.Expunge(ctx, alice, a.MailboxID, []imap.UID{gone.UID}); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, alice, "Projects", "Work"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, alice, "Doomed"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, alice, "Doomed"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, alice, "Work/X", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSettings(ctx, bob, storage.Settings{PollInterval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, bob, "changed"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, carol); err != nil {
		t.Fatal(err)
	}
	res := mustDeliver(t, s, queueDelivery("kept"))
	markSeen(t, s, ctx, bob, res.Copies[bob])
	if _, err := s.Copy(ctx, bob, res.Copies[bob].MailboxID, []imap.UID{res.Copies[bob].UID}, storage.Trash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRelayState(ctx, "down", nil); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)

	s = b.reopen(t, s, location)
	if after := snapshot(t, s); after != before {
		t.Errorf("the store after a restart differs:\n%s\nbefore:\n%s", after, before)
	}
	if _, err := s.Authenticate(ctx, bob, "changed"); err != nil {
		t.Errorf("changed password lost across a restart: %v", err)
	}
	if _, err := s.User(ctx, carol); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted user back after a restart: %v", err)
	}
	m := loadOne(t, s, alice, a.MailboxID, a.UID)
	if !reflect.DeepEqual(m.Flags, []imap.Flag{imap.FlagSeen, imap.FlagFlagged, "Keyword"}) || string(m.Body) != NestedMessage || m.Envelope.MessageID != "nested-1@example.com" {
		t.Errorf("message after a restart: flags %v", m.Flags)
	}
	if next := mustAppend(t, s, alice, "Work/X", simpleMessage("next")); next.UID != gone.UID+1 {
		t.Errorf("UID after a restart %d, want %d", next.UID, gone.UID+1)
	}
}

// deliverAllOrNothing: a delivery with one unknown recipient stores
// nothing at all: no INBOX copy, no Sent copy, no read-tracking record,
// no queue entry, no event, and no UID used up.
func deliverAllOrNothing(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	events := Listen(s)
	d := queueDelivery("doomed")
	d.Recipients = []string{bob, "ghost@example.com"}
	_, err := s.Deliver(ctx, d)
	wantErr(t, err, storage.ErrNotFound, "unknown recipient")
	if !strings.Contains(err.Error(), "ghost@example.com") {
		t.Errorf("error %q does not name the recipient", err)
	}
	for _, c := range []struct{ user, box string }{{alice, storage.Sent}, {bob, storage.Inbox}} {
		if st := mustMailbox(t, s, c.user, c.box); st.Messages != 0 || st.UIDNext != 1 {
			t.Errorf("%s %s after failed delivery: %+v", c.user, c.box, st)
		}
	}
	if l, err := s.SentStatus(ctx, alice); err != nil || len(l) != 0 {
		t.Errorf("read tracking after failed delivery: %+v %v", l, err)
	}
	if l, err := s.QueueEntries(ctx, storage.QueueFilter{}); err != nil || len(l) != 0 {
		t.Errorf("queue after failed delivery: %+v %v", l, err)
	}
	if c, _ := s.QueueCounts(ctx); c != (storage.QueueCounts{}) {
		t.Errorf("queue counts after failed delivery: %+v", c)
	}
	if evs := events.Snapshot(); len(evs) != 0 {
		t.Errorf("events from a failed delivery: %+v", evs)
	}
	if st, _ := s.Stats(ctx); st.Messages != 0 {
		t.Errorf("stats count %d messages after a failed delivery", st.Messages)
	}
	// The same delivery without the stranger goes through whole.
	d.Recipients = []string{bob}
	res := mustDeliver(t, s, d)
	if res.Sent == nil || res.Sent.UID != 1 || res.Copies[bob].UID != 1 || res.QueueID == 0 || res.TrackingID == 0 {
		t.Errorf("delivery after the failed one: %+v", res)
	}
}

// uidsAscendNeverReused: inside a mailbox UIDs only go up, and a name never
// hands out a (UIDVALIDITY, UID) pair twice: not after an expunge, a
// restart, a delete and re-create, a rename away and a new mailbox under
// the old name, nor when the renamed mailbox comes back.
func uidsAscendNeverReused(t *testing.T, b Backend) {
	s, location := b.withUsers(t, alice)
	ctx := context.Background()
	type slot struct {
		name     string
		validity uint32
		uid      imap.UID
	}
	issued := map[slot]bool{}
	last := map[uint64]imap.UID{} // by mailbox ID
	n := 0
	add := func(box string, flags ...imap.Flag) *storage.Appended {
		t.Helper()
		n++
		a := mustAppend(t, s, alice, box, simpleMessage(fmt.Sprintf("m%d", n)), flags...)
		k := slot{box, a.UIDValidity, a.UID}
		if issued[k] {
			t.Fatalf("%s: UIDVALIDITY %d UID %d handed out twice", box, a.UIDValidity, a.UID)
		}
		issued[k] = true
		if a.UID <= last[a.MailboxID] {
			t.Fatalf("%s: UID %d after %d", box, a.UID, last[a.MailboxID])
		}
		last[a.MailboxID] = a.UID
		return a
	}
	create := func(name string) {
		t.Helper()
		if err := s.CreateMailbox(ctx, alice, name); err != nil {
			t.Fatal(err)
		}
	}
	create("Box")
	for range 3 {
		add("Box", imap.FlagDeleted)
	}
	box := mustMailbox(t, s, alice, "Box")
	if gone, err := s.Expunge(ctx, alice, box.ID, nil); err != nil || len(gone) != 3 {
		t.Fatalf("expunge: %v %v", gone, err)
	}
	s = b.reopen(t, s, location)
	if a := add("Box"); a.UID != 4 {
		t.Errorf("UID after expunge and restart: %d, want 4", a.UID)
	}
	if err := s.DeleteMailbox(ctx, alice, "Box"); err != nil {
		t.Fatal(err)
	}
	create("Box")
	for range 4 {
		add("Box")
	}
	uids := mustUIDs(t, s, alice, mustMailbox(t, s, alice, "Box").ID)
	if len(uids) != 4 {
		t.Fatalf("uids %v", uids)
	}
	// Rename away, a new mailbox under the name, then the old one back.
	if err := s.RenameMailbox(ctx, alice, "Box", "Moved"); err != nil {
		t.Fatal(err)
	}
	moved := mustMailbox(t, s, alice, "Moved")
	create("Box")
	add("Box")
	s = b.reopen(t, s, location)
	add("Box")
	if err := s.DeleteMailbox(ctx, alice, "Box"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, alice, "Moved", "Box"); err != nil {
		t.Fatal(err)
	}
	back := mustMailbox(t, s, alice, "Box")
	if back.ID != moved.ID || back.UIDValidity != moved.UIDValidity || back.UIDNext != moved.UIDNext {
		t.Errorf("renamed back %+v, was %+v: want the same mailbox", back, moved)
	}
	if a := add("Box"); a.UID != moved.UIDNext {
		t.Errorf("UID %d in the mailbox renamed back, want its UIDNEXT %d", a.UID, moved.UIDNext)
	}
	got := mustUIDs(t, s, alice, back.ID)
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Errorf("UIDs not ascending: %v", got)
		}
	}
}

// uidValidityChangesOnRecreate: a mailbox deleted and created again, also
// after a restart or with its user deleted and created again, has a
// UIDVALIDITY it never had before.
func uidValidityChangesOnRecreate(t *testing.T, b Backend) {
	s, location := b.withUsers(t, alice)
	ctx := context.Background()
	seen := map[uint32]string{}
	note := func(what string) {
		t.Helper()
		list, err := s.Mailboxes(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			if m.UIDValidity == 0 {
				t.Fatalf("%s: %s has UIDVALIDITY 0", what, m.Name)
			}
			if prev, ok := seen[m.UIDValidity]; ok && prev != m.Name+fmt.Sprint(m.ID) {
				t.Fatalf("%s: %s has UIDVALIDITY %d, given before to %s", what, m.Name, m.UIDValidity, prev)
			}
			seen[m.UIDValidity] = m.Name + fmt.Sprint(m.ID)
		}
	}
	note("new user")
	for i := range 3 {
		if err := s.CreateMailbox(ctx, alice, "Box"); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, alice, "Box", simpleMessage("x"))
		note(fmt.Sprintf("Box created %d times", i+1))
		if err := s.DeleteMailbox(ctx, alice, "Box"); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			s = b.reopen(t, s, location)
		}
	}
	if err := s.DeleteUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	s = b.reopen(t, s, location)
	mustCreateUser(t, s, alice)
	note("user created again after a restart")
}

// isolationBetweenUsers: every method given another user's mailbox (by ID
// or by a name only the other user has) fails with ErrNotFound, changes
// nothing, and publishes nothing.
func isolationBetweenUsers(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, alice, "Private"); err != nil {
		t.Fatal(err)
	}
	a := mustAppend(t, s, alice, storage.Inbox, simpleMessage("private"))
	mustAppend(t, s, alice, "Private", simpleMessage("secret"), imap.FlagDeleted)
	private := mustMailbox(t, s, alice, "Private")
	aliceInbox := a.MailboxID
	snapshot := func(user string) string {
		t.Helper()
		var out []string
		list, err := s.Mailboxes(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			st := mustMailbox(t, s, user, m.Name)
			out = append(out, fmt.Sprintf("%+v", *st))
			msgs, err := s.Messages(ctx, user, m.ID, mustUIDs(t, s, user, m.ID), loadAll)
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range msgs {
				out = append(out, fmt.Sprintf("%d %v %s", msg.UID, msg.Flags, msg.Body))
			}
		}
		return strings.Join(out, "\n")
	}
	beforeAlice, beforeBob := snapshot(alice), snapshot(bob)
	events := Listen(s)

	for _, id := range []uint64{aliceInbox, private.ID} {
		_, err := s.UIDs(ctx, bob, id)
		wantErr(t, err, storage.ErrNotFound, "UIDs")
		_, err = s.Messages(ctx, bob, id, []imap.UID{1}, loadAll)
		wantErr(t, err, storage.ErrNotFound, "Messages")
		_, err = s.StoreFlags(ctx, bob, id, []imap.UID{1}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted})
		wantErr(t, err, storage.ErrNotFound, "StoreFlags")
		_, err = s.Expunge(ctx, bob, id, nil)
		wantErr(t, err, storage.ErrNotFound, "Expunge")
		_, err = s.Copy(ctx, bob, id, []imap.UID{1}, storage.Inbox)
		wantErr(t, err, storage.ErrNotFound, "Copy")
		_, err = s.Move(ctx, bob, id, []imap.UID{1}, storage.Inbox)
		wantErr(t, err, storage.ErrNotFound, "Move")
	}
	// By name: alice's Private does not exist for bob.
	_, err := s.Mailbox(ctx, bob, "Private")
	wantErr(t, err, storage.ErrNotFound, "Mailbox")
	_, err = s.MailboxStatus(ctx, bob, "Private")
	wantErr(t, err, storage.ErrNotFound, "MailboxStatus")
	_, err = s.Append(ctx, bob, "Private", &storage.NewMessage{Raw: []byte(simpleMessage("in"))})
	wantErr(t, err, storage.ErrNotFound, "Append")
	wantErr(t, s.DeleteMailbox(ctx, bob, "Private"), storage.ErrNotFound, "DeleteMailbox")
	wantErr(t, s.RenameMailbox(ctx, bob, "Private", "Mine"), storage.ErrNotFound, "RenameMailbox")
	wantErr(t, s.SetSubscribed(ctx, bob, "Private", true), storage.ErrNotFound, "SetSubscribed")
	// Bob's own mailbox as the source, alice's name as the destination.
	bobInbox := mustMailbox(t, s, bob, storage.Inbox)
	_, err = s.Copy(ctx, bob, bobInbox.ID, []imap.UID{1}, "Private")
	wantErr(t, err, storage.ErrNotFound, "Copy into a name only alice has")

	if got := snapshot(alice); got != beforeAlice {
		t.Errorf("alice's mailboxes changed:\n%s\nwas\n%s", got, beforeAlice)
	}
	if got := snapshot(bob); got != beforeBob {
		t.Errorf("bob's mailboxes changed:\n%s\nwas\n%s", got, beforeBob)
	}
	if evs := events.Snapshot(); len(evs) != 0 {
		t.Errorf("refused calls published %+v", evs)
	}
}

func returnedDataOutlivesTheStore(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	a := mustAppend(t, s, "alice@example.com", storage.Inbox, NestedMessage, "Keyword")
	msgs, err := s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, loadAll)
	if err != nil {
		t.Fatal(err)
	}
	boxes, err := s.Mailboxes(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close the file is unmapped: reading memory that aliased it
	// would crash here.
	m := msgs[0]
	if string(m.Body) != NestedMessage || m.Envelope.Subject != "Quarterly réport" || m.Flags[0] != "Keyword" || boxes[1].Name != storage.Inbox {
		t.Error("data changed after close")
	}
	_, err = s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, loadAll)
	wantErr(t, err, storage.ErrClosed, "read after close")
	_, err = s.Append(ctx, "alice@example.com", storage.Inbox, &storage.NewMessage{Raw: []byte("x")})
	wantErr(t, err, storage.ErrClosed, "write after close")
}

func eventsInCommitOrder(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	users := []string{"alice@example.com", "bob@example.com"}
	for _, u := range users {
		mustCreateUser(t, s, u)
	}
	events := Listen(s)

	const writers, perWriter = 32, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := storage.WithOrigin(ctx, storage.Origin{Session: uint64(w) + 1})
			for i := range perWriter {
				user := users[(w+i)%2]
				a, err := s.Append(ctx, user, storage.Inbox, &storage.NewMessage{Raw: []byte(simpleMessage(fmt.Sprintf("w%d m%d", w, i)))})
				if err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					_, err = s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	last := map[uint64]imap.UID{}
	appended := map[uint64]map[imap.UID]bool{}
	appends := 0
	for _, ev := range events.Snapshot() {
		if ev.Origin.IsZero() {
			t.Fatalf("event without the writer's origin: %+v", ev)
		}
		switch ev.Kind {
		case storage.EventAppend:
			appends++
			if ev.UID <= last[ev.MailboxID] {
				t.Fatalf("mailbox %d: append UID %d after %d", ev.MailboxID, ev.UID, last[ev.MailboxID])
			}
			last[ev.MailboxID] = ev.UID
			if appended[ev.MailboxID] == nil {
				appended[ev.MailboxID] = map[imap.UID]bool{}
			}
			appended[ev.MailboxID][ev.UID] = true
		case storage.EventFlags:
			// A flag change is seen only after the append it refers to.
			if !appended[ev.MailboxID][ev.UID] {
				t.Fatalf("flags event for UID %d before its append", ev.UID)
			}
		}
	}
	if appends != writers*perWriter {
		t.Errorf("%d append events, want %d", appends, writers*perWriter)
	}
	for _, u := range users {
		if st := mustMailbox(t, s, u, storage.Inbox); st.Messages != writers*perWriter/2 {
			t.Errorf("%s has %d messages", u, st.Messages)
		}
	}
}

// readsReturnCopies: changing what a read returned (bodies, headers,
// flags, UID lists, names, envelopes, queue and tracking records) changes
// nothing in the store.
func readsReturnCopies(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	d := queueDelivery("copies")
	res := mustDeliver(t, s, d)
	inbox := mustMailbox(t, s, bob, storage.Inbox)
	opts := storage.LoadOptions{Envelope: true, BodyStructure: true, Body: true, Header: true}
	load := func() *storage.Message {
		t.Helper()
		msgs, err := s.Messages(ctx, bob, inbox.ID, []imap.UID{res.Copies[bob].UID}, opts)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("load: %v %v", msgs, err)
		}
		return msgs[0]
	}
	up, err := s.StoreFlags(ctx, bob, inbox.ID, []imap.UID{res.Copies[bob].UID}, imap.StoreFlagsAdd, []imap.Flag{"Tag"})
	if err != nil || len(up) != 1 {
		t.Fatalf("store flags: %v %v", up, err)
	}
	up[0].Flags[0] = "Scribbled"
	want := load()
	wantBody, wantHeader, wantSubject := string(want.Body), string(want.Header), want.Envelope.Subject

	m := load()
	for i := range m.Body {
		m.Body[i] = 'X'
	}
	for i := range m.Header {
		m.Header[i] = 'Y'
	}
	m.Flags[0] = "Scribbled"
	m.Envelope.Subject = "scribbled"
	m.Envelope.From[0].Mailbox = "scribbled"
	uids := mustUIDs(t, s, bob, inbox.ID)
	uids[0] = 999
	boxes, err := s.Mailboxes(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	boxes[0].Name = "Scribbled"
	e := mustEntry(t, s, res.QueueID)
	e.To[0] = "scribbled@remote.test"
	e.Recipients[0].Address = "scribbled@remote.test"
	sent, err := s.SentStatus(ctx, alice)
	if err != nil || len(sent) != 1 {
		t.Fatalf("sent status %v %v", sent, err)
	}
	sent[0].Recipients[0].State = "scribbled"

	again := load()
	if string(again.Body) != wantBody || string(again.Header) != wantHeader || again.Envelope.Subject != wantSubject ||
		again.Envelope.From[0].Mailbox != "alice" || !reflect.DeepEqual(again.Flags, []imap.Flag{"Tag"}) {
		t.Errorf("message changed through a returned value: flags %v subject %q from %v", again.Flags, again.Envelope.Subject, again.Envelope.From)
	}
	if got := mustUIDs(t, s, bob, inbox.ID); got[0] != res.Copies[bob].UID {
		t.Errorf("UIDs %v", got)
	}
	if got := mailboxNames(t, s, bob); got != "Drafts INBOX Sent Trash" {
		t.Errorf("mailbox names %q", got)
	}
	if e := mustEntry(t, s, res.QueueID); e.To[0] != "X@Remote.test" || e.Recipients[0].Address != "X@Remote.test" {
		t.Errorf("queue entry to %v recipients %+v", e.To, e.Recipients)
	}
	if st := states(t, s, alice, res.TrackingID); st[bob] != storage.TrackUnread {
		t.Errorf("tracking %v", st)
	}
}

// eventsForEveryCommittedChange: each committed change publishes its
// events (and only those) before the call returns, so a listener sees
// the changes of one caller in the order of its calls.
func eventsForEveryCommittedChange(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	events := Listen(s)
	seen := 0
	describe := func(ev storage.Event) string {
		return fmt.Sprintf("%d %s %d %d %v %d", ev.Kind, ev.User, ev.MailboxID, ev.UID, ev.Flags, ev.QueueID)
	}
	expect := func(step string, want ...storage.Event) {
		t.Helper()
		all := events.Snapshot()
		var got, exp []string
		for _, ev := range all[seen:] {
			got = append(got, describe(ev))
		}
		for _, ev := range want {
			exp = append(exp, describe(ev))
		}
		// One commit may list its events in any order; commits may not mix.
		slices.Sort(got)
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			t.Errorf("%s: events\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(exp, "\n"))
		}
		seen = len(all)
	}
	inbox := mustMailbox(t, s, alice, storage.Inbox).ID
	if err := s.CreateMailbox(ctx, alice, "Box"); err != nil {
		t.Fatal(err)
	}
	box := mustMailbox(t, s, alice, "Box").ID
	expect("create", storage.Event{Kind: storage.EventMailboxes, User: alice, MailboxID: box})
	a := mustAppend(t, s, alice, storage.Inbox, simpleMessage("one"))
	expect("append", storage.Event{Kind: storage.EventAppend, User: alice, MailboxID: inbox, UID: a.UID, Flags: []imap.Flag{}})
	markSeen(t, s, ctx, alice, a)
	expect("store", storage.Event{Kind: storage.EventFlags, User: alice, MailboxID: inbox, UID: a.UID, Flags: []imap.Flag{imap.FlagSeen}})
	if _, err := s.Copy(ctx, alice, inbox, []imap.UID{a.UID}, "Box"); err != nil {
		t.Fatal(err)
	}
	expect("copy", storage.Event{Kind: storage.EventAppend, User: alice, MailboxID: box, UID: 1, Flags: []imap.Flag{imap.FlagSeen}})
	if _, err := s.Move(ctx, alice, inbox, []imap.UID{a.UID}, "Box"); err != nil {
		t.Fatal(err)
	}
	expect("move",
		storage.Event{Kind: storage.EventAppend, User: alice, MailboxID: box, UID: 2, Flags: []imap.Flag{imap.FlagSeen}},
		storage.Event{Kind: storage.EventExpunge, User: alice, MailboxID: inbox, UID: a.UID})
	if _, err := s.StoreFlags(ctx, alice, box, []imap.UID{1}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	expect("store deleted", storage.Event{Kind: storage.EventFlags, User: alice, MailboxID: box, UID: 1, Flags: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}})
	if _, err := s.Expunge(ctx, alice, box, nil); err != nil {
		t.Fatal(err)
	}
	expect("expunge", storage.Event{Kind: storage.EventExpunge, User: alice, MailboxID: box, UID: 1})
	if err := s.RenameMailbox(ctx, alice, "Box", "Kept"); err != nil {
		t.Fatal(err)
	}
	expect("rename", storage.Event{Kind: storage.EventMailboxes, User: alice, MailboxID: box})
	if err := s.DeleteMailbox(ctx, alice, "Kept"); err != nil {
		t.Fatal(err)
	}
	expect("delete", storage.Event{Kind: storage.EventMailboxes, User: alice, MailboxID: box})
	res := mustDeliver(t, s, queueDelivery("out"))
	expect("deliver",
		storage.Event{Kind: storage.EventAppend, User: alice, MailboxID: res.Sent.MailboxID, UID: res.Sent.UID, Flags: []imap.Flag{}},
		storage.Event{Kind: storage.EventAppend, User: bob, MailboxID: res.Copies[bob].MailboxID, UID: res.Copies[bob].UID, Flags: []imap.Flag{}},
		storage.Event{Kind: storage.EventQueued, QueueID: res.QueueID})
	// A change that changes nothing publishes nothing.
	if _, err := s.StoreFlags(ctx, bob, res.Copies[bob].MailboxID, []imap.UID{res.Copies[bob].UID}, imap.StoreFlagsDel, []imap.Flag{imap.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	expect("no-op store")
}
