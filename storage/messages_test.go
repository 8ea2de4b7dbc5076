package storage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

var loadAll = LoadOptions{Envelope: true, BodyStructure: true, Body: true}

func loadOne(t *testing.T, s Store, user string, id uint64, uid imap.UID) *Message {
	t.Helper()
	msgs, err := s.Messages(context.Background(), user, id, []imap.UID{uid}, loadAll)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("message %d: got %d messages", uid, len(msgs))
	}
	return msgs[0]
}

func TestAppendedMessageLoadsBackWithParsedStructure(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	date := time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("", 3*3600))
	a, err := s.Append(ctx, "alice@example.com", "INBOX", &NewMessage{
		Raw: []byte(nestedMessage), Flags: []imap.Flag{`\seen`, "$Important"}, InternalDate: date,
	})
	if err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, "alice@example.com", Inbox)
	if a.MailboxID != inbox.ID || a.UIDValidity != inbox.UIDValidity || a.UID != 1 || inbox.UIDNext != 2 {
		t.Errorf("appended %+v into %+v", a, inbox)
	}
	m := loadOne(t, s, "alice@example.com", a.MailboxID, a.UID)
	if !bytes.Equal(m.Body, []byte(nestedMessage)) || m.Size != int64(len(nestedMessage)) {
		t.Error("body or size differ")
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", m.InternalDate, date)
	}
	if want := []imap.Flag{imap.FlagSeen, "$Important"}; !reflect.DeepEqual(m.Flags, want) {
		t.Errorf("flags %v, want %v", m.Flags, want)
	}
	env, bs := parseMessage([]byte(nestedMessage))
	if err := sameEnvelope(env, m.Envelope); err != nil {
		t.Error(err)
	}
	if err := sameBodyStructure(bs, m.BodyStructure); err != nil {
		t.Error(err)
	}

	// Only what is asked for is loaded.
	msgs, err := s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := msgs[0]; m.Envelope != nil || m.BodyStructure != nil || m.Body != nil || m.Size == 0 {
		t.Errorf("bare load: %+v", m)
	}
}

func TestAppendKeepsTheCallersEnvelope(t *testing.T) {
	s, _ := openTestStore(t)
	mustCreateUser(t, s, "alice@example.com")
	env := &imap.Envelope{Subject: "given by caller", MessageID: "given@example.com"}
	a, err := s.Append(context.Background(), "alice@example.com", Drafts, &NewMessage{Raw: []byte(simpleMessage("parsed")), Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	m := loadOne(t, s, "alice@example.com", a.MailboxID, a.UID)
	if m.Envelope.Subject != "given by caller" {
		t.Errorf("subject %q", m.Envelope.Subject)
	}
	if m.BodyStructure == nil || m.BodyStructure.MediaType() != "text/plain" {
		t.Errorf("body structure not computed: %#v", m.BodyStructure)
	}
}

func TestAppendRefusesBadInput(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	_, err := s.Append(ctx, "alice@example.com", "Nope", &NewMessage{Raw: []byte("x")})
	wantErr(t, err, ErrNotFound, "unknown mailbox")
	_, err = s.Append(ctx, "alice@example.com", Inbox, nil)
	wantErr(t, err, ErrInvalid, "nil message")
	_, err = s.Append(ctx, "alice@example.com", Inbox, &NewMessage{Raw: []byte("x"), Flags: []imap.Flag{`\Bogus`}})
	wantErr(t, err, ErrInvalid, "unknown system flag")
	_, err = s.Append(ctx, "nobody@example.com", Inbox, &NewMessage{Raw: []byte("x")})
	wantErr(t, err, ErrNotFound, "unknown user")
	// Garbage is stored, not refused: it arrived and must be readable.
	a, err := s.Append(ctx, "alice@example.com", Inbox, &NewMessage{Raw: []byte("\x00\xff no header at all")})
	if err != nil {
		t.Fatalf("garbage message: %v", err)
	}
	if m := loadOne(t, s, "alice@example.com", a.MailboxID, a.UID); m.BodyStructure == nil || m.Envelope == nil {
		t.Error("garbage message has no structure")
	}
	if st := mustMailbox(t, s, "alice@example.com", Inbox); st.Messages != 1 {
		t.Errorf("%d messages, want only the garbage one", st.Messages)
	}
}

func TestStoreFlagsChangesFlagsAndUnseenCounter(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	for i := range 3 {
		mustAppend(t, s, user, Inbox, simpleMessage(string(rune('a'+i))))
	}
	inbox := mustMailbox(t, s, user, Inbox)
	if inbox.Unseen != 3 || inbox.Messages != 3 {
		t.Fatalf("before: %+v", inbox)
	}
	events := listen(s)

	up, err := s.StoreFlags(ctx, user, inbox.ID, []imap.UID{2, 1, 2, 99}, imap.StoreFlagsAdd, []imap.Flag{`\SEEN`, "Work"})
	if err != nil {
		t.Fatal(err)
	}
	// Each change takes the next modseq: inbox was at HighestModSeq.
	want := []FlagUpdate{
		{UID: 1, Flags: []imap.Flag{imap.FlagSeen, "Work"}, ModSeq: inbox.HighestModSeq + 1},
		{UID: 2, Flags: []imap.Flag{imap.FlagSeen, "Work"}, ModSeq: inbox.HighestModSeq + 2},
	}
	if !reflect.DeepEqual(up, want) {
		t.Errorf("add: %+v, want %+v", up, want)
	}
	if got := mustMailbox(t, s, user, Inbox).Unseen; got != 1 {
		t.Errorf("unseen %d after add, want 1", got)
	}
	// Adding again changes nothing and reports nothing.
	if up, err := s.StoreFlags(ctx, user, inbox.ID, []imap.UID{1}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil || len(up) != 0 {
		t.Errorf("no-op add: %+v, %v", up, err)
	}
	up, err = s.StoreFlags(ctx, user, inbox.ID, []imap.UID{1}, imap.StoreFlagsDel, []imap.Flag{imap.FlagSeen, "work"})
	if err != nil {
		t.Fatal(err)
	}
	if len(up) != 1 || len(up[0].Flags) != 0 {
		t.Errorf("del: %+v", up)
	}
	up, err = s.StoreFlags(ctx, user, inbox.ID, []imap.UID{2, 3}, imap.StoreFlagsSet, []imap.Flag{imap.FlagFlagged, `\Recent`})
	if err != nil {
		t.Fatal(err)
	}
	if len(up) != 2 || !reflect.DeepEqual(up[0].Flags, []imap.Flag{imap.FlagFlagged}) {
		t.Errorf("set: %+v", up)
	}
	if got := mustMailbox(t, s, user, Inbox).Unseen; got != 3 {
		t.Errorf("unseen %d after set, want 3", got)
	}

	evs := events.snapshot()
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5: %+v", len(evs), evs)
	}
	for _, ev := range evs {
		if ev.Kind != EventFlags || ev.MailboxID != inbox.ID || ev.User != user {
			t.Errorf("event %+v", ev)
		}
	}
	_, err = s.StoreFlags(ctx, user, inbox.ID, []imap.UID{1}, imap.StoreFlagsAdd, []imap.Flag{`\Nope`})
	wantErr(t, err, ErrInvalid, "unknown system flag")
	_, err = s.StoreFlags(ctx, user, inbox.ID, []imap.UID{1}, imap.StoreFlagsOp(42), nil)
	wantErr(t, err, ErrInvalid, "unknown operation")
}

func TestExpungeRemovesOnlyDeletedMessages(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	for i := range 5 {
		mustAppend(t, s, user, Inbox, simpleMessage(string(rune('a'+i))))
	}
	id := mustMailbox(t, s, user, Inbox).ID
	if _, err := s.StoreFlags(ctx, user, id, []imap.UID{2, 3, 5}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreFlags(ctx, user, id, []imap.UID{3}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	// With a UID set: only the \Deleted among them.
	gone, err := s.Expunge(ctx, user, id, []imap.UID{1, 2, 77})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gone, []imap.UID{2}) {
		t.Errorf("UID EXPUNGE removed %v, want [2]", gone)
	}
	events := listen(s)
	gone, err = s.Expunge(ctx, user, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gone, []imap.UID{3, 5}) {
		t.Errorf("EXPUNGE removed %v, want [3 5]", gone)
	}
	if got := mustUIDs(t, s, user, id); !reflect.DeepEqual(got, []imap.UID{1, 4}) {
		t.Errorf("left %v, want [1 4]", got)
	}
	st := mustMailbox(t, s, user, Inbox)
	if st.Messages != 2 || st.Unseen != 2 || st.Size != int64(len(simpleMessage("a"))*2) {
		t.Errorf("counters %+v", st)
	}
	evs := events.snapshot()
	if len(evs) != 2 || evs[0].Kind != EventExpunge || evs[0].UID != 3 || evs[1].UID != 5 {
		t.Errorf("events %+v", evs)
	}
	// Messages skips what is gone and keeps the caller's order.
	msgs, err := s.Messages(ctx, user, id, []imap.UID{4, 3, 1}, loadAll)
	if err != nil || len(msgs) != 2 || msgs[0].UID != 4 || msgs[1].UID != 1 {
		t.Errorf("loading 4, 3 (expunged), 1: %v, %v", msgs, err)
	}
}

func TestUIDsAscendAndAreNeverReused(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	if err := s.CreateMailbox(ctx, user, "Box"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustAppend(t, s, user, "Box", simpleMessage(string(rune('a'+i))), imap.FlagDeleted)
	}
	box := mustMailbox(t, s, user, "Box")
	if _, err := s.Expunge(ctx, user, box.ID, nil); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path)
	if a := mustAppend(t, s, user, "Box", simpleMessage("d")); a.UID != 4 {
		t.Errorf("UID after expunge and reopen: %d, want 4", a.UID)
	}
	if err := s.DeleteMailbox(ctx, user, "Box"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, user, "Box"); err != nil {
		t.Fatal(err)
	}
	again := mustMailbox(t, s, user, "Box")
	if again.UIDValidity == box.UIDValidity || again.ID == box.ID {
		t.Errorf("recreated mailbox kept identity: %+v vs %+v", again, box)
	}
	if a := mustAppend(t, s, user, "Box", simpleMessage("e")); a.UID <= 4 {
		t.Errorf("UID %d in recreated mailbox reuses an old one", a.UID)
	}
	for i := range 3 {
		mustAppend(t, s, user, "Box", simpleMessage(string(rune('f'+i))))
	}
	uids := mustUIDs(t, s, user, again.ID)
	if len(uids) != 4 {
		t.Fatalf("uids %v", uids)
	}
	for i := 1; i < len(uids); i++ {
		if uids[i] <= uids[i-1] {
			t.Errorf("UIDs not ascending: %v", uids)
		}
	}
	// Renaming away and creating the name again also continues.
	if err := s.RenameMailbox(ctx, user, "Box", "Moved"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, user, "Box"); err != nil {
		t.Fatal(err)
	}
	if a := mustAppend(t, s, user, "Box", simpleMessage("z")); a.UID <= uids[len(uids)-1] {
		t.Errorf("UID %d after rename reuses an old one (last %d)", a.UID, uids[len(uids)-1])
	}
}

func TestCopyKeepsFlagsAndDateAndSkipsMissingUIDs(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 3 {
		if _, err := s.Append(ctx, user, Inbox, &NewMessage{Raw: []byte(simpleMessage(string(rune('a' + i)))), Flags: []imap.Flag{imap.FlagSeen, "Tag"}, InternalDate: date}); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, s, user, Trash, simpleMessage("already there"))
	inbox := mustMailbox(t, s, user, Inbox)
	trash := mustMailbox(t, s, user, Trash)
	events := listen(s)
	res, err := s.Copy(ctx, user, inbox.ID, []imap.UID{3, 1, 42}, Trash)
	if err != nil {
		t.Fatal(err)
	}
	want := &CopyResult{UIDValidity: trash.UIDValidity, SourceUIDs: []imap.UID{1, 3}, DestUIDs: []imap.UID{2, 3}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("copy result %+v, want %+v", res, want)
	}
	m := loadOne(t, s, user, trash.ID, 3)
	if !m.InternalDate.Equal(date) || !reflect.DeepEqual(m.Flags, []imap.Flag{imap.FlagSeen, "Tag"}) || !bytes.Equal(m.Body, []byte(simpleMessage("c"))) {
		t.Errorf("copy: %+v", m)
	}
	if m.Envelope == nil || m.Envelope.Subject != "c" {
		t.Errorf("copy envelope %+v", m.Envelope)
	}
	if st := mustMailbox(t, s, user, Trash); st.Messages != 3 || st.Unseen != 1 {
		t.Errorf("trash counters %+v", st)
	}
	if st := mustMailbox(t, s, user, Inbox); st.Messages != 3 {
		t.Errorf("copy changed the source: %+v", st)
	}
	evs := events.snapshot()
	if len(evs) != 2 || evs[0].Kind != EventAppend || evs[0].MailboxID != trash.ID || !reflect.DeepEqual(evs[0].Flags, []imap.Flag{imap.FlagSeen, "Tag"}) {
		t.Errorf("events %+v", evs)
	}
	_, err = s.Copy(ctx, user, inbox.ID, []imap.UID{1}, "Nope")
	wantErr(t, err, ErrNotFound, "unknown destination")

	// Copy into the same mailbox adds new UIDs and counts them once.
	if _, err := s.Copy(ctx, user, inbox.ID, []imap.UID{1}, Inbox); err != nil {
		t.Fatal(err)
	}
	if st := mustMailbox(t, s, user, Inbox); st.Messages != 4 || st.UIDNext != 5 {
		t.Errorf("self copy: %+v", st)
	}
}

func TestMoveAppendsThenExpungesInOneCommit(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	for i := range 3 {
		mustAppend(t, s, user, Inbox, simpleMessage(string(rune('a'+i))))
	}
	inbox := mustMailbox(t, s, user, Inbox)
	trash := mustMailbox(t, s, user, Trash)
	events := listen(s)
	ctx = WithOrigin(ctx, Origin{Node: "n1", Session: 7})
	res, err := s.Move(ctx, user, inbox.ID, []imap.UID{1, 3}, Trash)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.SourceUIDs, []imap.UID{1, 3}) || !reflect.DeepEqual(res.DestUIDs, []imap.UID{1, 2}) || res.UIDValidity != trash.UIDValidity {
		t.Errorf("move result %+v", res)
	}
	var kinds []string
	for _, ev := range events.snapshot() {
		if ev.Origin != (Origin{Node: "n1", Session: 7}) {
			t.Errorf("event without origin: %+v", ev)
		}
		switch {
		case ev.Kind == EventAppend && ev.MailboxID == trash.ID:
			kinds = append(kinds, "append")
		case ev.Kind == EventExpunge && ev.MailboxID == inbox.ID:
			kinds = append(kinds, "expunge")
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if got := strings.Join(kinds, " "); got != "append append expunge expunge" {
		t.Errorf("event order %q", got)
	}
	if got := mustUIDs(t, s, user, inbox.ID); !reflect.DeepEqual(got, []imap.UID{2}) {
		t.Errorf("inbox left with %v", got)
	}
	if st := mustMailbox(t, s, user, Inbox); st.Messages != 1 || st.Unseen != 1 || st.Size != int64(len(simpleMessage("b"))) {
		t.Errorf("inbox counters %+v", st)
	}
	if st := mustMailbox(t, s, user, Trash); st.Messages != 2 || st.Unseen != 2 {
		t.Errorf("trash counters %+v", st)
	}
}

func TestDeliverWritesSentAndEveryInboxCopy(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	for _, u := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		mustCreateUser(t, s, u)
	}
	sent := simpleMessage("hello") + "Bcc: kept\r\n"
	res, err := s.Deliver(ctx, &Delivery{
		Sender:     "Alice@example.com",
		SentCopy:   &NewMessage{Raw: []byte(sent), Flags: []imap.Flag{imap.FlagSeen}},
		Recipients: []string{"bob@example.com", "CAROL@example.com", "bob@example.com"},
		Copy:       &NewMessage{Raw: []byte(simpleMessage("hello")), Flags: []imap.Flag{"$Important"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == nil || len(res.Copies) != 2 || res.Copies["bob@example.com"] == nil || res.Copies["carol@example.com"] == nil {
		t.Fatalf("result %+v", res)
	}
	m := loadOne(t, s, "alice@example.com", res.Sent.MailboxID, res.Sent.UID)
	// \Seen is dropped: the copy stays unread until both have read theirs.
	if string(m.Body) != sent || len(m.Flags) != 0 {
		t.Errorf("sent copy %q %v", m.Body, m.Flags)
	}
	if got := mustMailbox(t, s, "alice@example.com", Sent); got.ID != res.Sent.MailboxID {
		t.Errorf("sent copy went to mailbox %d, Sent is %d", res.Sent.MailboxID, got.ID)
	}
	for _, r := range []string{"bob@example.com", "carol@example.com"} {
		st := mustMailbox(t, s, r, Inbox)
		if st.Messages != 1 || st.Unseen != 1 || st.ID != res.Copies[r].MailboxID {
			t.Errorf("%s INBOX %+v", r, st)
		}
		m := loadOne(t, s, r, st.ID, res.Copies[r].UID)
		if string(m.Body) != simpleMessage("hello") || !reflect.DeepEqual(m.Flags, []imap.Flag{"$Important"}) {
			t.Errorf("%s copy %q %v", r, m.Body, m.Flags)
		}
	}
	_, err = s.Deliver(ctx, &Delivery{})
	wantErr(t, err, ErrInvalid, "empty delivery")
	_, err = s.Deliver(ctx, &Delivery{Sender: "alice@example.com"})
	wantErr(t, err, ErrInvalid, "sender without sent copy")
}

func TestDeliverToAnUnknownRecipientStoresNothing(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	events := listen(s)
	_, err := s.Deliver(ctx, &Delivery{
		Sender:     "alice@example.com",
		SentCopy:   &NewMessage{Raw: []byte(simpleMessage("x"))},
		Recipients: []string{"bob@example.com", "ghost@example.com"},
		Copy:       &NewMessage{Raw: []byte(simpleMessage("x"))},
	})
	wantErr(t, err, ErrNotFound, "unknown recipient")
	if !strings.Contains(err.Error(), "ghost@example.com") {
		t.Errorf("error %q does not name the recipient", err)
	}
	for _, c := range []struct{ user, box string }{{"alice@example.com", Sent}, {"bob@example.com", Inbox}} {
		if st := mustMailbox(t, s, c.user, c.box); st.Messages != 0 || st.UIDNext != 1 {
			t.Errorf("%s %s after failed delivery: %+v", c.user, c.box, st)
		}
	}
	if evs := events.snapshot(); len(evs) != 0 {
		t.Errorf("events from a failed delivery: %+v", evs)
	}
}

func TestUserCannotReachAnotherUsersMailboxByID(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	a := mustAppend(t, s, "alice@example.com", Inbox, simpleMessage("private"))
	aliceInbox := a.MailboxID
	const bob = "bob@example.com"

	_, err := s.UIDs(ctx, bob, aliceInbox)
	wantErr(t, err, ErrNotFound, "UIDs")
	_, err = s.Messages(ctx, bob, aliceInbox, []imap.UID{a.UID}, loadAll)
	wantErr(t, err, ErrNotFound, "Messages")
	_, err = s.StoreFlags(ctx, bob, aliceInbox, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted})
	wantErr(t, err, ErrNotFound, "StoreFlags")
	_, err = s.Expunge(ctx, bob, aliceInbox, nil)
	wantErr(t, err, ErrNotFound, "Expunge")
	_, err = s.Copy(ctx, bob, aliceInbox, []imap.UID{a.UID}, Inbox)
	wantErr(t, err, ErrNotFound, "Copy")
	_, err = s.Move(ctx, bob, aliceInbox, []imap.UID{a.UID}, Inbox)
	wantErr(t, err, ErrNotFound, "Move")

	if st := mustMailbox(t, s, "alice@example.com", Inbox); st.Messages != 1 {
		t.Errorf("alice's INBOX changed: %+v", st)
	}
	if st := mustMailbox(t, s, bob, Inbox); st.Messages != 0 {
		t.Errorf("bob got mail: %+v", st)
	}
}

func TestReturnedDataOutlivesTheDatabase(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	a := mustAppend(t, s, "alice@example.com", Inbox, nestedMessage, "Keyword")
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
	if string(m.Body) != nestedMessage || m.Envelope.Subject != "Quarterly réport" || m.Flags[0] != "Keyword" || boxes[1].Name != Inbox {
		t.Error("data changed after close")
	}
	_, err = s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, loadAll)
	wantErr(t, err, ErrClosed, "read after close")
	_, err = s.Append(ctx, "alice@example.com", Inbox, &NewMessage{Raw: []byte("x")})
	wantErr(t, err, ErrClosed, "write after close")
}

func TestReopenKeepsEverything(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	if err := s.CreateMailbox(ctx, user, "Projects/X"); err != nil {
		t.Fatal(err)
	}
	a := mustAppend(t, s, user, "Projects/X", nestedMessage, imap.FlagFlagged)
	if _, err := s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	before := mustMailbox(t, s, user, "Projects/X")
	s = reopen(t, s, path)
	after := mustMailbox(t, s, user, "Projects/X")
	if *before != *after {
		t.Errorf("mailbox changed across reopen: %+v vs %+v", before, after)
	}
	m := loadOne(t, s, user, a.MailboxID, a.UID)
	if !reflect.DeepEqual(m.Flags, []imap.Flag{imap.FlagSeen, imap.FlagFlagged}) || string(m.Body) != nestedMessage || m.Envelope.MessageID != "nested-1@example.com" {
		t.Errorf("message after reopen: flags %v", m.Flags)
	}
	if b := mustAppend(t, s, user, "Projects/X", simpleMessage("next")); b.UID != a.UID+1 {
		t.Errorf("UID after reopen %d", b.UID)
	}
}

func TestStatsAndBackup(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	if _, err := s.Deliver(ctx, &Delivery{
		Sender: "alice@example.com", SentCopy: &NewMessage{Raw: []byte(simpleMessage("s"))},
		Recipients: []string{"bob@example.com"}, Copy: &NewMessage{Raw: []byte(simpleMessage("s"))},
	}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Path != path || st.Users != 2 || st.Messages != 2 || st.Size <= 0 {
		t.Errorf("stats %+v", st)
	}

	var buf bytes.Buffer
	n, err := s.Backup(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n == 0 {
		t.Errorf("backup reported %d bytes, wrote %d", n, buf.Len())
	}
	// The store keeps serving writes after a backup, and the copy opens as
	// a store of its own with the data at backup time.
	mustAppend(t, s, "bob@example.com", Inbox, simpleMessage("after backup"))
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := openBolt(copyPath, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := mustMailbox(t, c, "bob@example.com", Inbox); st.Messages != 1 {
		t.Errorf("backup INBOX %+v", st)
	}
	if _, err := c.Authenticate(ctx, "bob@example.com", "secret"); err != nil {
		t.Errorf("backup lost the password: %v", err)
	}
}
