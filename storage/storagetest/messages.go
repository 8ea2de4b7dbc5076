package storagetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/storage"
)

func appendKeepsTheCallersEnvelope(t *testing.T, b Backend) {
	s, _ := b.New(t)
	mustCreateUser(t, s, "alice@example.com")
	env := &envelope.Envelope{Subject: "given by caller", MessageID: "given@example.com"}
	a, err := s.Append(context.Background(), "alice@example.com", storage.Drafts, &storage.NewMessage{Raw: []byte(simpleMessage("parsed")), Envelope: env})
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

func appendRefusesBadInput(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	_, err := s.Append(ctx, "alice@example.com", "Nope", &storage.NewMessage{Raw: []byte("x")})
	wantErr(t, err, storage.ErrNotFound, "unknown mailbox")
	_, err = s.Append(ctx, "alice@example.com", storage.Inbox, nil)
	wantErr(t, err, storage.ErrInvalid, "nil message")
	_, err = s.Append(ctx, "alice@example.com", storage.Inbox, &storage.NewMessage{Raw: []byte("x"), Flags: []imap.Flag{`\Bogus`}})
	wantErr(t, err, storage.ErrInvalid, "unknown system flag")
	_, err = s.Append(ctx, "nobody@example.com", storage.Inbox, &storage.NewMessage{Raw: []byte("x")})
	wantErr(t, err, storage.ErrNotFound, "unknown user")
	// Garbage is stored, not refused: it arrived and must be readable.
	a, err := s.Append(ctx, "alice@example.com", storage.Inbox, &storage.NewMessage{Raw: []byte("\x00\xff no header at all")})
	if err != nil {
		t.Fatalf("garbage message: %v", err)
	}
	if m := loadOne(t, s, "alice@example.com", a.MailboxID, a.UID); m.BodyStructure == nil || m.Envelope == nil {
		t.Error("garbage message has no structure")
	}
	if st := mustMailbox(t, s, "alice@example.com", storage.Inbox); st.Messages != 1 {
		t.Errorf("%d messages, want only the garbage one", st.Messages)
	}
}

// headerLoadsTheRawHeaderAlone checks LoadOptions.Header: the raw
// message up to the empty line that ends its header, whatever the line
// ends, without the body unless asked for, and never sharing memory a
// caller could write through into the body.
func headerLoadsTheRawHeaderAlone(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	for _, tc := range []struct{ name, raw, header string }{
		{"CRLF", "Subject: a\r\nFrom: b@example.com\r\n\r\nbody\r\n\r\nmore\r\n", "Subject: a\r\nFrom: b@example.com\r\n\r\n"},
		{"LF", "Subject: a\nX: b\n\nbody\n\nmore\n", "Subject: a\nX: b\n\n"},
		{"folded", "Subject: a\r\n b\r\n\r\nbody\r\n", "Subject: a\r\n b\r\n\r\n"},
		{"LF blank line after CRLF lines", "Subject: a\r\n\nbody\r\n\r\n", "Subject: a\r\n\n"},
		{"no body", "Subject: only a header\r\n", "Subject: only a header\r\n"},
		{"no header", "\r\nbody\r\n\r\n", "\r\n"},
		{"no header, LF", "\nbody\n\n", "\n"},
	} {
		a := mustAppend(t, s, "alice@example.com", storage.Inbox, tc.raw)
		msgs, err := s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, storage.LoadOptions{Header: true})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: load header: %v, %d messages", tc.name, err, len(msgs))
		}
		m := msgs[0]
		if string(m.Header) != tc.header || m.Body != nil {
			t.Errorf("%s: header %q, body %q; want header %q, no body", tc.name, m.Header, m.Body, tc.header)
		}
		// textproto.ReadHeader finds the same fields in the header alone.
		full, fullErr := textproto.ReadHeader(bufio.NewReader(bytes.NewReader([]byte(tc.raw))))
		alone, aloneErr := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.Header)))
		if (fullErr == nil) != (aloneErr == nil) || !reflect.DeepEqual(headerFields(full), headerFields(alone)) {
			t.Errorf("%s: header alone parses to %v (%v), the message to %v (%v)", tc.name, headerFields(alone), aloneErr, headerFields(full), fullErr)
		}

		msgs, err = s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, storage.LoadOptions{Header: true, Body: true})
		if err != nil {
			t.Fatal(err)
		}
		m = msgs[0]
		if string(m.Header) != tc.header || string(m.Body) != tc.raw {
			t.Errorf("%s: with the body: header %q, body %q", tc.name, m.Header, m.Body)
		}
		if grown := append(m.Header, 'X'); string(m.Body) != tc.raw || string(grown) != tc.header+"X" {
			t.Errorf("%s: appending to Header changed Body to %q", tc.name, m.Body)
		}
	}
}

func headerFields(h textproto.Header) []string {
	var out []string
	for f := h.Fields(); f.Next(); {
		out = append(out, f.Key()+": "+f.Value())
	}
	return out
}

func storeFlagsChangesFlagsAndUnseenCounter(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	for i := range 3 {
		mustAppend(t, s, user, storage.Inbox, simpleMessage(string(rune('a'+i))))
	}
	inbox := mustMailbox(t, s, user, storage.Inbox)
	if inbox.Unseen != 3 || inbox.Messages != 3 {
		t.Fatalf("before: %+v", inbox)
	}
	events := Listen(s)

	up, err := s.StoreFlags(ctx, user, inbox.ID, []imap.UID{2, 1, 2, 99}, imap.StoreFlagsAdd, []imap.Flag{`\SEEN`, "Work"})
	if err != nil {
		t.Fatal(err)
	}
	// Each change takes the next modseq: inbox was at HighestModSeq.
	want := []storage.FlagUpdate{
		{UID: 1, Flags: []imap.Flag{imap.FlagSeen, "Work"}, ModSeq: inbox.HighestModSeq + 1},
		{UID: 2, Flags: []imap.Flag{imap.FlagSeen, "Work"}, ModSeq: inbox.HighestModSeq + 2},
	}
	if !reflect.DeepEqual(up, want) {
		t.Errorf("add: %+v, want %+v", up, want)
	}
	if got := mustMailbox(t, s, user, storage.Inbox).Unseen; got != 1 {
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
	if got := mustMailbox(t, s, user, storage.Inbox).Unseen; got != 3 {
		t.Errorf("unseen %d after set, want 3", got)
	}

	evs := events.Snapshot()
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5: %+v", len(evs), evs)
	}
	for _, ev := range evs {
		if ev.Kind != storage.EventFlags || ev.MailboxID != inbox.ID || ev.User != user {
			t.Errorf("event %+v", ev)
		}
	}
	_, err = s.StoreFlags(ctx, user, inbox.ID, []imap.UID{1}, imap.StoreFlagsAdd, []imap.Flag{`\Nope`})
	wantErr(t, err, storage.ErrInvalid, "unknown system flag")
	_, err = s.StoreFlags(ctx, user, inbox.ID, []imap.UID{1}, imap.StoreFlagsOp(42), nil)
	wantErr(t, err, storage.ErrInvalid, "unknown operation")
}

func expungeRemovesOnlyDeletedMessages(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	for i := range 5 {
		mustAppend(t, s, user, storage.Inbox, simpleMessage(string(rune('a'+i))))
	}
	id := mustMailbox(t, s, user, storage.Inbox).ID
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
	events := Listen(s)
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
	st := mustMailbox(t, s, user, storage.Inbox)
	if st.Messages != 2 || st.Unseen != 2 || st.Size != int64(len(simpleMessage("a"))*2) {
		t.Errorf("counters %+v", st)
	}
	evs := events.Snapshot()
	if len(evs) != 2 || evs[0].Kind != storage.EventExpunge || evs[0].UID != 3 || evs[1].UID != 5 {
		t.Errorf("events %+v", evs)
	}
	// Messages skips what is gone and keeps the caller's order.
	msgs, err := s.Messages(ctx, user, id, []imap.UID{4, 3, 1}, loadAll)
	if err != nil || len(msgs) != 2 || msgs[0].UID != 4 || msgs[1].UID != 1 {
		t.Errorf("loading 4, 3 (expunged), 1: %v, %v", msgs, err)
	}
}

func copyKeepsFlagsAndDate(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 3 {
		if _, err := s.Append(ctx, user, storage.Inbox, &storage.NewMessage{Raw: []byte(simpleMessage(string(rune('a' + i)))), Flags: []imap.Flag{imap.FlagSeen, "Tag"}, InternalDate: date}); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, s, user, storage.Trash, simpleMessage("already there"))
	inbox := mustMailbox(t, s, user, storage.Inbox)
	trash := mustMailbox(t, s, user, storage.Trash)
	events := Listen(s)
	res, err := s.Copy(ctx, user, inbox.ID, []imap.UID{3, 1, 42}, storage.Trash)
	if err != nil {
		t.Fatal(err)
	}
	want := &storage.CopyResult{UIDValidity: trash.UIDValidity, SourceUIDs: []imap.UID{1, 3}, DestUIDs: []imap.UID{2, 3}}
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
	if st := mustMailbox(t, s, user, storage.Trash); st.Messages != 3 || st.Unseen != 1 {
		t.Errorf("trash counters %+v", st)
	}
	if st := mustMailbox(t, s, user, storage.Inbox); st.Messages != 3 {
		t.Errorf("copy changed the source: %+v", st)
	}
	evs := events.Snapshot()
	if len(evs) != 2 || evs[0].Kind != storage.EventAppend || evs[0].MailboxID != trash.ID || !reflect.DeepEqual(evs[0].Flags, []imap.Flag{imap.FlagSeen, "Tag"}) {
		t.Errorf("events %+v", evs)
	}
	_, err = s.Copy(ctx, user, inbox.ID, []imap.UID{1}, "Nope")
	wantErr(t, err, storage.ErrNotFound, "unknown destination")

	// Copy into the same mailbox adds new UIDs and counts them once.
	if _, err := s.Copy(ctx, user, inbox.ID, []imap.UID{1}, storage.Inbox); err != nil {
		t.Fatal(err)
	}
	if st := mustMailbox(t, s, user, storage.Inbox); st.Messages != 4 || st.UIDNext != 5 {
		t.Errorf("self copy: %+v", st)
	}
}

func moveAppendsThenExpungesInOneCommit(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	for i := range 3 {
		mustAppend(t, s, user, storage.Inbox, simpleMessage(string(rune('a'+i))))
	}
	inbox := mustMailbox(t, s, user, storage.Inbox)
	trash := mustMailbox(t, s, user, storage.Trash)
	events := Listen(s)
	origin := storage.Origin{Node: "node-a", Session: 7}
	ctx = storage.WithOrigin(ctx, origin)
	res, err := s.Move(ctx, user, inbox.ID, []imap.UID{1, 3}, storage.Trash)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.SourceUIDs, []imap.UID{1, 3}) || !reflect.DeepEqual(res.DestUIDs, []imap.UID{1, 2}) || res.UIDValidity != trash.UIDValidity {
		t.Errorf("move result %+v", res)
	}
	var kinds []string
	for _, ev := range events.Snapshot() {
		if ev.Origin != origin {
			t.Errorf("event without origin: %+v", ev)
		}
		switch {
		case ev.Kind == storage.EventAppend && ev.MailboxID == trash.ID:
			kinds = append(kinds, "append")
		case ev.Kind == storage.EventExpunge && ev.MailboxID == inbox.ID:
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
	if st := mustMailbox(t, s, user, storage.Inbox); st.Messages != 1 || st.Unseen != 1 || st.Size != int64(len(simpleMessage("b"))) {
		t.Errorf("inbox counters %+v", st)
	}
	if st := mustMailbox(t, s, user, storage.Trash); st.Messages != 2 || st.Unseen != 2 {
		t.Errorf("trash counters %+v", st)
	}
}

func deliverWritesSentAndEveryInboxCopy(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	for _, u := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		mustCreateUser(t, s, u)
	}
	sent := simpleMessage("hello") + "Bcc: kept\r\n"
	res, err := s.Deliver(ctx, &storage.Delivery{
		Sender:     "Alice@example.com",
		SentCopy:   &storage.NewMessage{Raw: []byte(sent), Flags: []imap.Flag{imap.FlagSeen}},
		Recipients: []string{"bob@example.com", "CAROL@example.com", "bob@example.com"},
		Copy:       &storage.NewMessage{Raw: []byte(simpleMessage("hello")), Flags: []imap.Flag{"$Important"}},
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
	if got := mustMailbox(t, s, "alice@example.com", storage.Sent); got.ID != res.Sent.MailboxID {
		t.Errorf("sent copy went to mailbox %d, Sent is %d", res.Sent.MailboxID, got.ID)
	}
	for _, r := range []string{"bob@example.com", "carol@example.com"} {
		st := mustMailbox(t, s, r, storage.Inbox)
		if st.Messages != 1 || st.Unseen != 1 || st.ID != res.Copies[r].MailboxID {
			t.Errorf("%s INBOX %+v", r, st)
		}
		m := loadOne(t, s, r, st.ID, res.Copies[r].UID)
		if string(m.Body) != simpleMessage("hello") || !reflect.DeepEqual(m.Flags, []imap.Flag{"$Important"}) {
			t.Errorf("%s copy %q %v", r, m.Body, m.Flags)
		}
	}
	_, err = s.Deliver(ctx, &storage.Delivery{})
	wantErr(t, err, storage.ErrInvalid, "empty delivery")
	_, err = s.Deliver(ctx, &storage.Delivery{Sender: "alice@example.com"})
	wantErr(t, err, storage.ErrInvalid, "sender without sent copy")
}

// appendedMessageLoadsBack: what Append stored comes back from Messages
// byte for byte, with its flags, internal date, size and the envelope and
// body structure parsed at delivery, and only what LoadOptions asks for.
func appendedMessageLoadsBack(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice)
	ctx := context.Background()
	date := time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("", 3*3600))
	a, err := s.Append(ctx, alice, storage.Inbox, &storage.NewMessage{
		Raw: []byte(NestedMessage), Flags: []imap.Flag{`\seen`, "$Important"}, InternalDate: date,
	})
	if err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, alice, storage.Inbox)
	if a.MailboxID != inbox.ID || a.UIDValidity != inbox.UIDValidity || a.UID != 1 || inbox.UIDNext != 2 {
		t.Errorf("appended %+v into %+v", a, inbox)
	}
	m := loadOne(t, s, alice, a.MailboxID, a.UID)
	if string(m.Body) != NestedMessage || m.Size != int64(len(NestedMessage)) {
		t.Error("body or size differ")
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", m.InternalDate, date)
	}
	if want := []imap.Flag{imap.FlagSeen, "$Important"}; !reflect.DeepEqual(m.Flags, want) {
		t.Errorf("flags %v, want %v", m.Flags, want)
	}
	env := m.Envelope
	if env == nil {
		t.Fatal("no envelope")
	}
	if env.Subject != "Quarterly réport" || env.MessageID != "nested-1@example.com" ||
		!reflect.DeepEqual(env.InReplyTo, []string{"parent@example.com"}) ||
		len(env.From) != 1 || env.From[0].Addr() != alice || env.From[0].Name != "Alice A." ||
		len(env.To) != 2 || env.To[1].Addr() != "carol@example.org" || len(env.Cc) != 1 || len(env.Bcc) != 1 ||
		len(env.Sender) != 1 || env.Sender[0].Addr() != "sec@example.com" || len(env.ReplyTo) != 1 {
		t.Errorf("envelope %+v", env)
	}
	if want := time.Date(2026, 2, 3, 15, 11, 12, 0, time.UTC); !env.Date.Equal(want) {
		t.Errorf("envelope date %v, want %v", env.Date, want)
	}
	mixed, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mixed.Subtype != "mixed" || len(mixed.Children) != 3 {
		t.Fatalf("body structure %#v: want multipart/mixed with three parts", m.BodyStructure)
	}
	var types []string
	for _, c := range mixed.Children {
		types = append(types, c.MediaType())
	}
	if got := strings.Join(types, " "); got != "multipart/alternative application/pdf message/rfc822" {
		t.Errorf("parts %s", got)
	}
	if alt := mixed.Children[0].(*imap.BodyStructureMultiPart); len(alt.Children) != 2 || alt.Children[1].MediaType() != "text/html" {
		t.Errorf("alternative %#v", alt)
	}
	pdf := mixed.Children[1].(*imap.BodyStructureSinglePart)
	if pdf.Encoding != "base64" || pdf.ID != "<part2@example.com>" || pdf.Description != "The report" || pdf.Disposition().Value != "attachment" {
		t.Errorf("attachment %#v", pdf)
	}
	fwd := mixed.Children[2].(*imap.BodyStructureSinglePart)
	if fwd.MessageRFC822 == nil || fwd.MessageRFC822.Envelope == nil || fwd.MessageRFC822.Envelope.Subject != "Forwarded" {
		t.Errorf("forwarded message %#v", fwd.MessageRFC822)
	}

	// Only what is asked for is loaded.
	msgs, err := s.Messages(ctx, alice, a.MailboxID, []imap.UID{a.UID}, storage.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := msgs[0]; m.Envelope != nil || m.BodyStructure != nil || m.Body != nil || m.Header != nil || m.Size == 0 {
		t.Errorf("bare load: %+v", m)
	}
}

// statsCount: Stats counts users and messages and names the store's data.
func statsCount(t *testing.T, b Backend) {
	s, location := b.withUsers(t, alice, bob)
	ctx := context.Background()
	submit(t, s, "counted", bob)
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Path != location || st.Users != 2 || st.Messages != 2 || st.Size <= 0 {
		t.Errorf("stats %+v: want %s, 2 users, 2 messages (Sent and bob's copy)", st, location)
	}
}

// backupOpensAsAStoreOfItsOwn: Backup writes a consistent copy while the
// store keeps serving, and the copy holds the data at backup time.
//
// A backend whose databases are backed up by other tools (Backend.NoBackup)
// must instead refuse: Backup returns an error wrapping
// errors.ErrUnsupported, writes nothing, and the store keeps serving.
func backupOpensAsAStoreOfItsOwn(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	if b.NoBackup != "" {
		t.Logf("backend without Backup: %s", b.NoBackup)
		var buf bytes.Buffer
		n, err := s.Backup(ctx, &buf)
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Backup of a backend without Backup: %v, want an error wrapping errors.ErrUnsupported", err)
		}
		if n != 0 || buf.Len() != 0 {
			t.Errorf("a refused Backup wrote %d bytes (reported %d)", buf.Len(), n)
		}
		if _, err := s.Authenticate(ctx, bob, "secret"); err != nil {
			t.Errorf("the store after a refused backup: %v", err)
		}
		return
	}
	submit(t, s, "before backup", bob)
	var buf bytes.Buffer
	n, err := s.Backup(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n == 0 {
		t.Errorf("backup reported %d bytes, wrote %d", n, buf.Len())
	}
	mustAppend(t, s, bob, storage.Inbox, simpleMessage("after backup"))
	c := b.OpenBackup(t, buf.Bytes())
	defer c.Close()
	if st := mustMailbox(t, c, bob, storage.Inbox); st.Messages != 1 {
		t.Errorf("backup INBOX %+v, want the one message from before the backup", st)
	}
	if st := mustMailbox(t, c, alice, storage.Sent); st.Messages != 1 {
		t.Errorf("backup Sent %+v", st)
	}
	if _, err := c.Authenticate(ctx, bob, "secret"); err != nil {
		t.Errorf("backup lost the password: %v", err)
	}
	if st := mustMailbox(t, s, bob, storage.Inbox); st.Messages != 2 {
		t.Errorf("the store after backup %+v", st)
	}
}

// checkFindsNothingInAHealthyStore: Check reads every record of a store
// in use and reports none as bad, with or without repair.
func checkFindsNothingInAHealthyStore(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	submit(t, s, "healthy", bob)
	mustAppend(t, s, alice, storage.Drafts, NestedMessage)
	for _, repair := range []bool{false, true} {
		rep, err := s.Check(ctx, repair)
		if err != nil {
			t.Fatalf("check (repair %v): %v", repair, err)
		}
		// 2 users, 8 mailboxes, 3 messages.
		if len(rep.Bad) != 0 || rep.Checked < 13 {
			t.Errorf("check (repair %v): %+v", repair, rep)
		}
	}
	if st := mustMailbox(t, s, alice, storage.Drafts); st.Messages != 1 {
		t.Errorf("check changed Drafts: %+v", st)
	}
}
