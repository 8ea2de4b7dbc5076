package imapd

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// condLogin opens a raw connection logged in as alice and, if enable is
// not empty, ENABLEs it.
func (e *testEnv) condLogin(enable string) *rawConn {
	e.t.Helper()
	c := e.raw()
	c.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	if enable != "" {
		if lines := c.ok("e ENABLE " + enable); len(lines) != 1 || !strings.HasPrefix(lines[0], "* ENABLED "+enable) {
			e.t.Fatalf("ENABLE %s: %q", enable, lines)
		}
	}
	return c
}

var (
	reHighest     = regexp.MustCompile(`\[HIGHESTMODSEQ (\d+)\]`)
	reUIDValidity = regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`)
	reModSeq      = regexp.MustCompile(`MODSEQ \((\d+)\)`)
)

// findNumber returns the number re captures in the first line it matches.
func findNumber(t *testing.T, re *regexp.Regexp, lines []string) uint64 {
	t.Helper()
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in %q", re, lines)
	return 0
}

func grep(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, strings.TrimRight(l, "\r\n"))
		}
	}
	return out
}

// A QRESYNC client that comes back after another client changed flags
// and expunged gets exactly those changes: VANISHED (EARLIER) for the
// expunged UID and one FETCH (UID FLAGS MODSEQ) per changed message.
func TestQResyncAfterOfflineChangesGetsExactlyTheChanges(t *testing.T) {
	e := newTestEnv(t)
	for i := range 5 {
		e.appendMsg(alice, "INBOX", testMessage("ann@example.org", alice, fmt.Sprint("m", i), "hi"))
	}
	a := e.condLogin("QRESYNC")
	sel := a.ok("s SELECT INBOX")
	validity, highest := findNumber(t, reUIDValidity, sel), findNumber(t, reHighest, sel)
	a.ok("z LOGOUT")

	// Another client, meanwhile: flags on 2 and 4, 3 expunged.
	b := e.condLogin("")
	b.ok("s SELECT INBOX")
	b.ok(`t UID STORE 2,4 +FLAGS.SILENT (\Flagged)`)
	b.ok(`u UID STORE 3 +FLAGS.SILENT (\Deleted)`)
	b.ok("x EXPUNGE")

	a = e.condLogin("QRESYNC")
	lines := a.ok(fmt.Sprintf("s SELECT INBOX (QRESYNC (%d %d 2:*))", validity, highest))
	if got := grep(lines, "* VANISHED"); len(got) != 1 || got[0] != "* VANISHED (EARLIER) 3" {
		t.Errorf("VANISHED: %q, want [* VANISHED (EARLIER) 3]", got)
	}
	fetches := grep(lines, "* ")
	var changed []string
	for _, l := range fetches {
		if strings.Contains(l, " FETCH ") {
			changed = append(changed, l)
		}
	}
	if len(changed) != 2 || !strings.HasPrefix(changed[0], `* 2 FETCH (UID 2 FLAGS (\Flagged) MODSEQ (`) ||
		!strings.HasPrefix(changed[1], `* 3 FETCH (UID 4 FLAGS (\Flagged) MODSEQ (`) {
		t.Errorf("FETCH responses %q, want UIDs 2 and 4 (now 2 and 3) flagged, with MODSEQ", changed)
	}
	if now := findNumber(t, reHighest, lines); now <= highest {
		t.Errorf("HIGHESTMODSEQ %d after changes, want above %d", now, highest)
	}
	if n := findNumber(t, reModSeq, changed); n <= highest {
		t.Errorf("changed message has MODSEQ %d, want above %d", n, highest)
	}

	// A wrong UIDVALIDITY gets no resync data at all (RFC 7162 3.2.5).
	lines = a.ok(fmt.Sprintf("s2 SELECT INBOX (QRESYNC (%d %d 1:5))", validity+1, highest))
	if got := grep(lines, "* VANISHED"); len(got) != 0 {
		t.Errorf("resync with the wrong UIDVALIDITY: %q", got)
	}
	if !strings.Contains(strings.Join(lines, ""), "[CLOSED]") {
		t.Errorf("second SELECT without [CLOSED]: %q", lines)
	}
}

// Expunges reach a QRESYNC session as VANISHED, whoever made them, and
// a CONDSTORE session gets MODSEQ with another client's flag change.
func TestQResyncLiveExpungesAreVanished(t *testing.T) {
	e := newTestEnv(t)
	for i := range 4 {
		e.appendMsg(alice, "INBOX", testMessage("ann@example.org", alice, fmt.Sprint("m", i), "hi"))
	}
	a := e.condLogin("QRESYNC")
	a.ok("s SELECT INBOX")
	plain := e.condLogin("")
	plain.ok("s SELECT INBOX")
	b := e.condLogin("")
	b.ok("s SELECT INBOX")
	b.ok(`t STORE 1 +FLAGS.SILENT (\Seen)`)
	b.ok(`u UID STORE 2 +FLAGS.SILENT (\Deleted)`)
	b.ok("x EXPUNGE")

	lines := a.ok("n NOOP")
	if got := grep(lines, "* 1 FETCH"); len(got) != 1 || !regexp.MustCompile(`^\* 1 FETCH \(UID 1 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)$`).MatchString(got[0]) {
		t.Errorf("flag change: %q, want UID, FLAGS and MODSEQ", got)
	}
	if got := grep(lines, "* VANISHED"); len(got) != 1 || got[0] != "* VANISHED 2" {
		t.Errorf("expunge by another session: %q, want * VANISHED 2", got)
	}
	if got := grep(lines, "* 2 EXPUNGE"); len(got) != 0 {
		t.Errorf("QRESYNC session got EXPUNGE: %q", got)
	}
	if got := grep(plain.ok("n NOOP"), "* 2 EXPUNGE"); len(got) != 1 {
		t.Errorf("a session without QRESYNC should get * 2 EXPUNGE")
	}

	// Its own expunge too.
	a.ok(`t UID STORE 4 +FLAGS.SILENT (\Deleted)`)
	a.send("x UID EXPUNGE 4")
	if l := a.expect("* "); l != "* VANISHED 4\r\n" {
		t.Errorf("own UID EXPUNGE: %q, want * VANISHED 4", l)
	}
	// RFC 7162 3.2.7: the tagged OK carries the raised HIGHESTMODSEQ.
	want := fmt.Sprintf("x OK [HIGHESTMODSEQ %d]", e.inbox(alice).HighestModSeq)
	if l := a.expect("x "); !strings.HasPrefix(l, want) {
		t.Errorf("UID EXPUNGE answered %q, want %q", l, want)
	}
}

// FETCH (CHANGEDSINCE), STORE (UNCHANGEDSINCE) with MODIFIED, SEARCH
// MODSEQ and STATUS HIGHESTMODSEQ against real storage.
func TestCondStoreCommands(t *testing.T) {
	e := newTestEnv(t)
	for i := range 3 {
		e.appendMsg(alice, "INBOX", testMessage("ann@example.org", alice, fmt.Sprint("m", i), "hi"))
	}
	a := e.condLogin("")
	sel := a.ok("s SELECT INBOX (CONDSTORE)")
	base := findNumber(t, reHighest, sel)
	if base != e.inbox(alice).HighestModSeq {
		t.Errorf("SELECT HIGHESTMODSEQ %d, storage says %d", base, e.inbox(alice).HighestModSeq)
	}

	b := e.condLogin("")
	b.ok("s SELECT INBOX")
	b.ok(`t STORE 2 +FLAGS (\Flagged)`)

	lines := a.ok("f FETCH 1:* (FLAGS) (CHANGEDSINCE " + fmt.Sprint(base) + ")")
	// (The first is the answer; b's change also comes as an unsolicited
	// FETCH after it.)
	got := grep(lines, "* 2 FETCH")
	if len(grep(lines, "* 1 FETCH"))+len(grep(lines, "* 3 FETCH")) != 0 || len(got) == 0 || !regexp.MustCompile(`FLAGS \(\\Flagged( \\Recent)?\) MODSEQ \(`).MatchString(got[0]) {
		t.Errorf("FETCH CHANGEDSINCE: %q, want message 2 only, with MODSEQ", lines)
	}
	changedAt := findNumber(t, reModSeq, got)

	// Message 2 changed after base: its conditional STORE fails, 1's
	// succeeds; the tagged OK names 2 as MODIFIED.
	a.send(fmt.Sprintf(`c STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\Seen)`, base))
	var untagged []string
	var tagged string
	for tagged == "" {
		l := a.expect("")
		if strings.HasPrefix(l, "c ") {
			tagged = l
		} else {
			untagged = append(untagged, l)
		}
	}
	if !strings.HasPrefix(tagged, "c OK [MODIFIED 2]") {
		t.Errorf("conditional STORE: %q, want OK [MODIFIED 2]", tagged)
	}
	if f := grep(untagged, "* 1 FETCH"); len(f) != 1 || !strings.Contains(f[0], `\Seen`) || !strings.Contains(f[0], "MODSEQ (") {
		t.Errorf("conditional STORE responses: %q", untagged)
	}
	if f := grep(untagged, "* 2 FETCH"); len(f) != 0 {
		t.Errorf("failed message got a FETCH: %q", f)
	}
	flags := grep(a.ok("g FETCH 2 (FLAGS)"), "* 2 FETCH")
	if len(flags) != 1 || strings.Contains(flags[0], `\Seen`) {
		t.Errorf("message 2 after its STORE failed: %q, want no \\Seen", flags)
	}

	if s := grep(a.ok(fmt.Sprintf("h SEARCH MODSEQ %d", changedAt)), "* SEARCH"); len(s) != 1 ||
		!regexp.MustCompile(`^\* SEARCH 1 2 \(MODSEQ \d+\)$`).MatchString(s[0]) {
		t.Errorf("SEARCH MODSEQ: %q, want 1 2 with (MODSEQ n)", s)
	}
	if s := grep(a.ok("h2 UID SEARCH RETURN (ALL) MODSEQ 1 NOT SEEN"), "* ESEARCH"); len(s) != 1 ||
		!regexp.MustCompile(`^\* ESEARCH \(TAG "h2"\) UID ALL 2:3 MODSEQ \d+$`).MatchString(s[0]) {
		t.Errorf("ESEARCH MODSEQ: %q", s)
	}
	want := fmt.Sprintf("* STATUS INBOX (MESSAGES 3 HIGHESTMODSEQ %d)", e.inbox(alice).HighestModSeq)
	if s := grep(b.ok("st STATUS INBOX (MESSAGES HIGHESTMODSEQ)"), "* STATUS"); len(s) != 1 || s[0] != want {
		t.Errorf("STATUS: %q, want %q", s, want)
	}
	if f := grep(a.ok("m FETCH 3 (MODSEQ)"), "* 3 FETCH"); len(f) != 1 || !regexp.MustCompile(`^\* 3 FETCH \(MODSEQ \(\d+\)\)$`).MatchString(f[0]) {
		t.Errorf("FETCH MODSEQ: %q", f)
	}
}

// UID FETCH (CHANGEDSINCE n VANISHED) reports the expunged UIDs of its set
// before the changed messages.
func TestUIDFetchVanished(t *testing.T) {
	e := newTestEnv(t)
	for i := range 5 {
		e.appendMsg(alice, "INBOX", testMessage("ann@example.org", alice, fmt.Sprint("m", i), "hi"))
	}
	a := e.condLogin("QRESYNC")
	base := findNumber(t, reHighest, a.ok("s SELECT INBOX"))
	a.ok(`t UID STORE 1,4 +FLAGS.SILENT (\Deleted)`)
	a.ok("x UID EXPUNGE 1")
	a.ok(`u UID STORE 5 +FLAGS.SILENT (\Answered)`)
	lines := a.ok(fmt.Sprintf("f UID FETCH 2:* (FLAGS) (CHANGEDSINCE %d VANISHED)", base))
	if v := grep(lines, "* VANISHED"); len(v) != 0 {
		t.Errorf("VANISHED for UIDs outside the set 2:*: %q", v)
	}
	lines = a.ok(fmt.Sprintf("g UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", base))
	if v := grep(lines, "* VANISHED"); len(v) != 1 || v[0] != "* VANISHED (EARLIER) 1" {
		t.Errorf("UID FETCH VANISHED: %q, want * VANISHED (EARLIER) 1", lines)
	}
	var uids []string
	for _, l := range lines {
		if m := regexp.MustCompile(`FETCH \(UID (\d+) FLAGS`).FindStringSubmatch(l); m != nil {
			uids = append(uids, m[1])
		}
	}
	if strings.Join(uids, ",") != "4,5" {
		t.Errorf("changed UIDs %q, want 4,5", uids)
	}
}

// countingStore counts the messages read through Messages.
type countingStore struct {
	storage.Store
	read atomic.Int64
}

func (s *countingStore) Messages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, o storage.LoadOptions) ([]*storage.Message, error) {
	s.read.Add(int64(len(uids)))
	return s.Store.Messages(ctx, user, mailboxID, uids, o)
}

// Issue 12 item 4: a QRESYNC resync of a big mailbox after a few flag
// changes reads no message at all: the change feed has what it needs.
func TestQResyncOfBigMailboxReadsOnlyTheChanges(t *testing.T) {
	const messages, changes = 3000, 100
	var counter *countingStore
	e := newTestEnv(t, withStoreWrapper(func(s storage.Store) storage.Store {
		counter = &countingStore{Store: s}
		return counter
	}))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < messages; i += 8 {
				if _, err := e.store.Append(context.Background(), alice, "INBOX", &storage.NewMessage{Raw: testMessage("ann@example.org", alice, fmt.Sprint("m", i), "hi")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := e.inbox(alice)
	if st.Messages != messages {
		t.Fatalf("%d messages stored, want %d", st.Messages, messages)
	}
	set := make([]imap.UID, 0, changes)
	for i := range changes {
		set = append(set, imap.UID(1+i*(messages/changes)))
	}
	if _, err := e.store.StoreFlags(context.Background(), alice, st.ID, set, imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged}); err != nil {
		t.Fatal(err)
	}

	a := e.condLogin("QRESYNC")
	before := counter.read.Load()
	lines := a.ok(fmt.Sprintf("s SELECT INBOX (QRESYNC (%d %d))", st.UIDValidity, st.HighestModSeq))
	if read := counter.read.Load() - before; read != 0 {
		t.Errorf("the resync read %d messages, want none (only the change feed)", read)
	}
	n := 0
	for _, l := range lines {
		if strings.Contains(l, " FETCH (UID ") {
			n++
		}
	}
	if n != changes {
		t.Errorf("%d FETCH responses, want %d", n, changes)
	}
}

// sweptStore answers Changes as a store whose tombstones were swept: the
// expunges are no longer known (storage sweeps them after
// TombstoneLifetime).
type sweptStore struct{ storage.Store }

func (s sweptStore) Changes(ctx context.Context, user string, mailboxID uint64, since uint64) (*storage.ChangeSet, error) {
	cs, err := s.Store.Changes(ctx, user, mailboxID, since)
	if err == nil {
		cs.Vanished, cs.VanishedIncomplete = nil, true
	}
	return cs, err
}

// When storage no longer knows every expunge since the client's modseq,
// the resync falls back to comparing the client's known UIDs with the
// mailbox (RFC 7162 3.2.5.2): every known UID not present is VANISHED.
func TestQResyncWithSweptTombstonesComparesKnownUIDs(t *testing.T) {
	e := newTestEnv(t, withStoreWrapper(func(s storage.Store) storage.Store { return sweptStore{s} }))
	for i := range 6 {
		e.appendMsg(alice, "INBOX", testMessage("ann@example.org", alice, fmt.Sprint("m", i), "hi"))
	}
	st := e.inbox(alice)
	if _, err := e.store.StoreFlags(context.Background(), alice, st.ID, []imap.UID{2, 3, 5}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Expunge(context.Background(), alice, st.ID, []imap.UID{2, 3, 5}); err != nil {
		t.Fatal(err)
	}
	a := e.condLogin("QRESYNC")
	lines := a.ok(fmt.Sprintf("s SELECT INBOX (QRESYNC (%d %d 1:4,6))", st.UIDValidity, st.HighestModSeq))
	if got := grep(lines, "* VANISHED"); len(got) != 1 || got[0] != "* VANISHED (EARLIER) 2:3" {
		t.Errorf("VANISHED: %q, want the known UIDs no longer present, 2:3", got)
	}
	lines = a.ok(fmt.Sprintf("f UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", st.HighestModSeq))
	if got := grep(lines, "* VANISHED"); len(got) != 1 || got[0] != "* VANISHED (EARLIER) 2:3,5" {
		t.Errorf("UID FETCH VANISHED: %q, want 2:3,5", got)
	}
}

// BenchmarkQResync50kAfter100Changes is issue 12's resync: a client that
// knows a 50,000-message INBOX comes back after 100 flag changes and
// resynchronises with SELECT (QRESYNC ...). Each op is the whole SELECT
// over loopback; it must read no message (only the feed's 100 entries).
func BenchmarkQResync50kAfter100Changes(b *testing.B) {
	const messages, changes = 50000, 100
	var counter *countingStore
	e := newTestEnv(b, withStoreWrapper(func(s storage.Store) storage.Store {
		counter = &countingStore{Store: s}
		return counter
	}))
	fillInbox(b, e, messages, 1024)
	st, err := e.store.MailboxStatus(context.Background(), alice, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	set := make([]imap.UID, 0, changes)
	for i := range changes {
		set = append(set, imap.UID(1+i*(messages/changes)))
	}
	if _, err := e.store.StoreFlags(context.Background(), alice, st.ID, set, imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged}); err != nil {
		b.Fatal(err)
	}
	a := e.condLogin("QRESYNC")
	before := counter.read.Load()
	for i := 0; b.Loop(); i++ {
		lines := a.ok(fmt.Sprintf("s%d SELECT INBOX (QRESYNC (%d %d))", i, st.UIDValidity, st.HighestModSeq))
		n := 0
		for _, l := range lines {
			if strings.Contains(l, " FETCH (UID ") {
				n++
			}
		}
		if n != changes {
			b.Fatalf("%d FETCH responses, want %d", n, changes)
		}
	}
	if read := counter.read.Load() - before; read != 0 {
		b.Fatalf("the resyncs read %d messages, want none", read)
	}
}
