package boltstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

// TestModSeqAscendsOnEveryWriteAndSurvivesRestart: every kind of change
// raises the mailbox's HIGHESTMODSEQ, the event carries the new value, the
// message keeps it, and none of it goes back after a restart or a rename.
func TestModSeqAscendsOnEveryWriteAndSurvivesRestart(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	const alice, bob = "alice@example.com", "bob@example.com"
	mustCreateUser(t, s, alice)
	mustCreateUser(t, s, bob)
	events := listen(s)
	last := map[string]uint64{}
	step := func(what, user, box string) uint64 {
		t.Helper()
		st := mustMailbox(t, s, user, box)
		if st.HighestModSeq <= last[user+box] {
			t.Fatalf("%s: HIGHESTMODSEQ of %s %s %d, was %d: want higher", what, user, box, st.HighestModSeq, last[user+box])
		}
		last[user+box] = st.HighestModSeq
		return st.HighestModSeq
	}
	step("create", bob, storage.Inbox)
	step("create", bob, storage.Trash)
	step("create", alice, storage.Sent)

	a := mustAppend(t, s, bob, storage.Inbox, simpleMessage("one"))
	mustAppend(t, s, bob, storage.Inbox, simpleMessage("two"))
	ms := step("append", bob, storage.Inbox)
	if got := messageModSeq(t, s, bob, a.MailboxID, 2); got != ms {
		t.Errorf("message 2 modseq %d, want the mailbox's %d", got, ms)
	}
	res, err := s.Deliver(ctx, &storage.Delivery{
		Sender: alice, SentCopy: &storage.NewMessage{Raw: []byte(simpleMessage("tracked"))},
		Recipients: []string{bob}, Copy: &storage.NewMessage{Raw: []byte(simpleMessage("tracked"))},
		From: alice, Source: storage.SourceUser, MessageID: "<tracked@example.com>",
	})
	if err != nil {
		t.Fatal(err)
	}
	step("deliver", bob, storage.Inbox)
	step("deliver", alice, storage.Sent)
	if _, err := s.StoreFlags(ctx, bob, a.MailboxID, []imap.UID{1}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	ms = step("flags", bob, storage.Inbox)
	if got := messageModSeq(t, s, bob, a.MailboxID, 1); got != ms {
		t.Errorf("message 1 modseq %d after STORE, want %d", got, ms)
	}
	// bob reads the tracked copy: the server sets \Seen on alice's Sent copy.
	if _, err := s.StoreFlags(ctx, bob, a.MailboxID, []imap.UID{res.Copies[bob].UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	step("flags", bob, storage.Inbox)
	ms = step("tracking sets \\Seen", alice, storage.Sent)
	if got := messageModSeq(t, s, alice, res.Sent.MailboxID, res.Sent.UID); got != ms {
		t.Errorf("Sent copy modseq %d, want %d", got, ms)
	}
	if _, err := s.StoreFlags(ctx, bob, a.MailboxID, []imap.UID{2}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	step("flags", bob, storage.Inbox)
	if _, err := s.Expunge(ctx, bob, a.MailboxID, nil); err != nil {
		t.Fatal(err)
	}
	step("expunge", bob, storage.Inbox)
	if _, err := s.Copy(ctx, bob, a.MailboxID, []imap.UID{1}, storage.Trash); err != nil {
		t.Fatal(err)
	}
	step("copy", bob, storage.Trash)
	if _, err := s.Move(ctx, bob, a.MailboxID, []imap.UID{1}, storage.Trash); err != nil {
		t.Fatal(err)
	}
	step("move", bob, storage.Trash)
	step("move", bob, storage.Inbox)
	if err := s.CreateMailbox(ctx, bob, "Work"); err != nil {
		t.Fatal(err)
	}
	step("create", bob, "Work")
	mustAppend(t, s, bob, "Work", simpleMessage("w"))
	step("append", bob, "Work")
	if err := s.SetSubscribed(ctx, bob, "Work", true); err != nil {
		t.Fatal(err)
	}
	step("subscribe", bob, "Work")
	if err := s.RenameMailbox(ctx, bob, "Work", "Job"); err != nil {
		t.Fatal(err)
	}
	last[bob+"Job"] = last[bob+"Work"]
	step("rename", bob, "Job")

	// Every event carries the modseq its mailbox reached; within a
	// mailbox they ascend.
	seen := map[uint64]uint64{}
	for _, ev := range events.Snapshot() {
		if ev.Kind == storage.EventTracking {
			continue // a Sent copy's recipients, not a change of the mailbox
		}
		if ev.ModSeq == 0 {
			t.Fatalf("event without a modseq: %+v", ev)
		}
		if ev.ModSeq <= seen[ev.MailboxID] && ev.Kind != storage.EventMailboxes {
			t.Fatalf("event %+v: modseq not above %d", ev, seen[ev.MailboxID])
		}
		seen[ev.MailboxID] = max(seen[ev.MailboxID], ev.ModSeq)
	}

	s = reopen(t, s, path)
	for key, want := range last {
		if key == bob+"Work" {
			continue
		}
		user, box := alice, key[len(alice):]
		if len(key) >= len(bob) && key[:len(bob)] == bob {
			user, box = bob, key[len(bob):]
		}
		if got := mustMailbox(t, s, user, box).HighestModSeq; got != want {
			t.Errorf("%s %s after restart: HIGHESTMODSEQ %d, want %d", user, box, got, want)
		}
	}
	mustAppend(t, s, bob, storage.Inbox, simpleMessage("after restart"))
	step("append after restart", bob, storage.Inbox)

	// A mailbox created again under an old name is a new mailbox: a new
	// UIDVALIDITY tells readers its modseqs start again.
	job := mustMailbox(t, s, bob, "Job")
	if err := s.DeleteMailbox(ctx, bob, "Job"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, bob, "Job"); err != nil {
		t.Fatal(err)
	}
	if again := mustMailbox(t, s, bob, "Job"); again.UIDValidity == job.UIDValidity {
		t.Errorf("re-created mailbox kept UIDVALIDITY %d", job.UIDValidity)
	}
}

func messageModSeq(t *testing.T, s storage.Store, user string, box uint64, uid imap.UID) uint64 {
	t.Helper()
	msgs, err := s.Messages(context.Background(), user, box, []imap.UID{uid}, storage.LoadOptions{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("message %d: %v (%d found)", uid, err, len(msgs))
	}
	return msgs[0].ModSeq
}

// TestChangesSinceReturnsExactlyTheChanges: the messages changed after N
// with their flags and modseqs, the UIDs expunged after N, nothing else.
func TestChangesSinceReturnsExactlyTheChanges(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const bob = "bob@example.com"
	mustCreateUser(t, s, bob)
	for i := range 5 {
		mustAppend(t, s, bob, storage.Inbox, simpleMessage(string(rune('a'+i))))
	}
	box := mustMailbox(t, s, bob, storage.Inbox)
	since := box.HighestModSeq
	if _, err := s.StoreFlags(ctx, bob, box.ID, []imap.UID{4, 2}, imap.StoreFlagsAdd, []imap.Flag{"$Work"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreFlags(ctx, bob, box.ID, []imap.UID{3}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, bob, box.ID, nil); err != nil {
		t.Fatal(err)
	}
	// A message changed twice is listed once, at its last change.
	up, err := s.StoreFlags(ctx, bob, box.ID, []imap.UID{2}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := s.Changes(ctx, bob, box.ID, since)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Messages(ctx, bob, box.ID, []imap.UID{2, 4}, storage.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []storage.FlagUpdate{
		{UID: 2, Flags: msgs[0].Flags, ModSeq: msgs[0].ModSeq},
		{UID: 4, Flags: msgs[1].Flags, ModSeq: msgs[1].ModSeq},
	}
	if !reflect.DeepEqual(cs.Changed, want) {
		t.Errorf("changed since %d: %+v, want %+v", since, cs.Changed, want)
	}
	if cs.Changed[0].ModSeq != up[0].ModSeq || !slices.Contains(cs.Changed[0].Flags, imap.FlagSeen) {
		t.Errorf("message 2 listed at %+v, want its last change %+v", cs.Changed[0], up[0])
	}
	if !reflect.DeepEqual(cs.Vanished, []imap.UID{3}) || cs.VanishedIncomplete {
		t.Errorf("vanished since %d: %v (incomplete %v), want [3]", since, cs.Vanished, cs.VanishedIncomplete)
	}
	if now := mustMailbox(t, s, bob, storage.Inbox).HighestModSeq; cs.HighestModSeq != now {
		t.Errorf("HIGHESTMODSEQ %d, want %d", cs.HighestModSeq, now)
	}

	cs, err = s.Changes(ctx, bob, box.ID, cs.HighestModSeq)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Changed) != 0 || len(cs.Vanished) != 0 {
		t.Errorf("changes since the current modseq: %+v", cs)
	}
	cs, err = s.Changes(ctx, bob, box.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var uids []imap.UID
	for _, c := range cs.Changed {
		uids = append(uids, c.UID)
	}
	if !reflect.DeepEqual(uids, []imap.UID{1, 2, 4, 5}) || !reflect.DeepEqual(cs.Vanished, []imap.UID{3}) || cs.VanishedIncomplete {
		t.Errorf("changes since 0: messages %v, vanished %v (incomplete %v)", uids, cs.Vanished, cs.VanishedIncomplete)
	}
	if _, err := s.Changes(ctx, "eve@example.com", box.ID, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("another user's mailbox: %v, want ErrNotFound", err)
	}
}

// TestChangesReadsOnlyTheChanges: in a mailbox of 50,000 messages, the
// changes after 100 flag changes cost 100 index entries, not 50,000.
func TestChangesReadsOnlyTheChanges(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const bob = "bob@example.com"
	mustCreateUser(t, s, bob)
	fill(t, s, bob, storage.Inbox, 50000, []byte(simpleMessage("bulk")))
	box := mustMailbox(t, s, bob, storage.Inbox)
	var uids []imap.UID
	for i := range 100 {
		uids = append(uids, imap.UID(1+i*500))
	}
	if _, err := s.StoreFlags(ctx, bob, box.ID, uids, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	before := s.feedReads.Load()
	cs, err := s.Changes(ctx, bob, box.ID, box.HighestModSeq)
	if err != nil {
		t.Fatal(err)
	}
	if read := s.feedReads.Load() - before; read != 100 {
		t.Errorf("Changes read %d index entries for 100 changes", read)
	}
	if len(cs.Changed) != 100 || cs.Changed[99].UID != uids[99] {
		t.Errorf("got %d changes", len(cs.Changed))
	}
}

// TestTombstonesExpire: a swept tombstone is no longer listed, and a reader
// asking about changes from before it is told its list is incomplete.
func TestTombstonesExpire(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	const bob = "bob@example.com"
	mustCreateUser(t, s, bob)
	mustAppend(t, s, bob, storage.Inbox, simpleMessage("a"), imap.FlagDeleted)
	mustAppend(t, s, bob, storage.Inbox, simpleMessage("b"))
	box := mustMailbox(t, s, bob, storage.Inbox)
	before := box.HighestModSeq
	if _, err := s.Expunge(ctx, bob, box.ID, nil); err != nil {
		t.Fatal(err)
	}
	after := mustMailbox(t, s, bob, storage.Inbox).HighestModSeq
	if n, err := s.sweepTombstones(ctx, time.Now().Add(-storage.TombstoneLifetime)); err != nil || n != 0 {
		t.Fatalf("sweep of fresh tombstones: removed %d, %v", n, err)
	}
	cs, err := s.Changes(ctx, bob, box.ID, before)
	if err != nil || !reflect.DeepEqual(cs.Vanished, []imap.UID{1}) || cs.VanishedIncomplete {
		t.Fatalf("before the sweep: %+v, %v", cs, err)
	}
	// TombstoneLifetime later.
	if n, err := s.sweepTombstones(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("sweep: removed %d, %v; want 1", n, err)
	}
	s = reopen(t, s, path)
	cs, err = s.Changes(ctx, bob, box.ID, before)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Vanished) != 0 || !cs.VanishedIncomplete {
		t.Errorf("since %d after the sweep: vanished %v, incomplete %v; want none, incomplete", before, cs.Vanished, cs.VanishedIncomplete)
	}
	cs, err = s.Changes(ctx, bob, box.ID, after)
	if err != nil || cs.VanishedIncomplete {
		t.Errorf("since %d (after the expunge): incomplete %v, %v", after, cs.VanishedIncomplete, err)
	}
}

// TestStoreFlagsUnchangedSince: RFC 7162 3.1.3, the messages changed after
// the given modseq are left alone and reported.
func TestStoreFlagsUnchangedSince(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const bob = "bob@example.com"
	mustCreateUser(t, s, bob)
	for i := range 3 {
		mustAppend(t, s, bob, storage.Inbox, simpleMessage(string(rune('a'+i))))
	}
	box := mustMailbox(t, s, bob, storage.Inbox)
	if _, err := s.StoreFlags(ctx, bob, box.ID, []imap.UID{2}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	up, modified, err := s.StoreFlagsUnchangedSince(ctx, bob, box.ID, []imap.UID{3, 2, 1, 99}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged}, box.HighestModSeq)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(modified, []imap.UID{2}) {
		t.Errorf("modified %v, want [2]", modified)
	}
	if len(up) != 2 || up[0].UID != 1 || up[1].UID != 3 {
		t.Fatalf("updated %+v, want 1 and 3", up)
	}
	msgs, err := s.Messages(ctx, bob, box.ID, []imap.UID{1, 2, 3}, storage.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if flagged := slices.Contains(m.Flags, imap.FlagFlagged); flagged != (m.UID != 2) {
			t.Errorf("message %d flags %v", m.UID, m.Flags)
		}
	}
	if up[1].ModSeq != mustMailbox(t, s, bob, storage.Inbox).HighestModSeq || msgs[2].ModSeq != up[1].ModSeq {
		t.Errorf("updated modseqs %+v", up)
	}
	// UNCHANGEDSINCE with the current modseq changes everything.
	_, modified, err = s.StoreFlagsUnchangedSince(ctx, bob, box.ID, []imap.UID{1, 2, 3}, imap.StoreFlagsDel, []imap.Flag{imap.FlagFlagged}, up[1].ModSeq)
	if err != nil || len(modified) != 0 {
		t.Errorf("unchanged since the current modseq: modified %v, %v", modified, err)
	}
}

// TestReadBodyStreamsTheStoredBytes: a body larger than one chunk reads
// back exactly, at any offset, and a missing message is ErrNotFound.
func TestReadBodyStreamsTheStoredBytes(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const bob = "bob@example.com"
	mustCreateUser(t, s, bob)
	raw := sizedMessage(3*bodyChunk + 1234)
	a, err := s.Append(ctx, bob, storage.Inbox, &storage.NewMessage{Raw: raw})
	if err != nil {
		t.Fatal(err)
	}
	err = s.ReadBody(ctx, bob, a.MailboxID, a.UID, func(body *io.SectionReader) error {
		if body.Size() != int64(len(raw)) {
			t.Errorf("size %d, want %d", body.Size(), len(raw))
		}
		got, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, raw) {
			t.Errorf("read %d bytes that differ from the %d stored", len(got), len(raw))
		}
		p := make([]byte, bodyChunk+10)
		n, err := body.ReadAt(p, bodyChunk-5)
		if n != len(p) || err != nil || !bytes.Equal(p, raw[bodyChunk-5:2*bodyChunk+5]) {
			t.Errorf("ReadAt across chunks: %d, %v", n, err)
		}
		n, err = body.ReadAt(p, int64(len(raw))-3)
		if n != 3 || err != io.EOF {
			t.Errorf("ReadAt at the end: %d, %v; want 3, EOF", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Expunged while being read: the read fails, it does not return junk.
	err = s.ReadBody(ctx, bob, a.MailboxID, a.UID, func(body *io.SectionReader) error {
		if _, err := s.StoreFlags(ctx, bob, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Expunge(ctx, bob, a.MailboxID, nil); err != nil {
			t.Fatal(err)
		}
		_, err := io.ReadAll(body)
		return err
	})
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("read of an expunged message: %v, want ErrNotFound", err)
	}
	if err := s.ReadBody(ctx, bob, a.MailboxID, a.UID, func(*io.SectionReader) error { return nil }); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing message: %v, want ErrNotFound", err)
	}
}

// BenchmarkChangesAfter100FlagsIn50k: Changes costs the changes, not the
// mailbox.
func BenchmarkChangesAfter100FlagsIn50k(b *testing.B) {
	s := benchStore(b)
	fill(b, s, "bob@example.com", storage.Inbox, 50000, sizedMessage(1024))
	ctx := context.Background()
	box := mustMailbox(b, s, "bob@example.com", storage.Inbox)
	for i := range 100 {
		if _, err := s.StoreFlags(ctx, "bob@example.com", box.ID, []imap.UID{imap.UID(1 + i*500)}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		cs, err := s.Changes(ctx, "bob@example.com", box.ID, box.HighestModSeq)
		if err != nil || len(cs.Changed) != 100 {
			b.Fatal(len(cs.Changed), err)
		}
	}
}
