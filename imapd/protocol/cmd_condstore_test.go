package protocol

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// condStoreSession answers like RFC 7162's examples: a mailbox whose
// HIGHESTMODSEQ is 715194045007, a conditional STORE that fails for 7 and
// 9, a MODSEQ search, and a QRESYNC resync.
type condStoreSession struct {
	*fakeSession
}

func (s condStoreSession) Select(name string, o *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := s.fakeSession.Select(name, o)
	if err == nil {
		if o.CondStore {
			s.record("SELECT condstore")
		}
		data.UIDValidity, data.HighestModSeq = 3857529045, 715194045007
	}
	return data, err
}

func (s condStoreSession) Status(name string, o *imap.StatusOptions) (*imap.StatusData, error) {
	data, err := s.fakeSession.Status(name, o)
	data.HighestModSeq = 7011231777
	return data, err
}

func (s condStoreSession) Fetch(w *FetchWriter, set imap.NumSet, o *imap.FetchOptions) error {
	s.record("FETCH %v changedsince=%d modseq=%v vanished=%v", set, o.ChangedSince, o.ModSeq, w.Vanished())
	if w.Vanished() {
		if err := w.WriteVanished(imap.UIDSet{{Start: 300, Stop: 310}, {Start: 405, Stop: 405}, {Start: 411, Stop: 411}}, true); err != nil {
			return err
		}
	}
	m := w.CreateMessage(1)
	m.WriteUID(4)
	m.WriteModSeq(12121231000)
	return m.Close()
}

func (s condStoreSession) Store(w *FetchWriter, set imap.NumSet, flags *imap.StoreFlags, o *imap.StoreOptions) error {
	since, ok := w.UnchangedSince()
	s.record("STORE %v unchangedsince=%d,%v", set, since, ok)
	m := w.CreateMessage(5)
	m.WriteModSeq(320162350)
	if err := m.Close(); err != nil {
		return err
	}
	w.SetModified(imap.SeqSet{{Start: 7, Stop: 7}, {Start: 9, Stop: 9}})
	return nil
}

func (s condStoreSession) Search(kind NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	if c.ModSeq != nil {
		s.record("SEARCH modseq=%d %q %s", c.ModSeq.ModSeq, c.ModSeq.MetadataName, c.ModSeq.MetadataType)
	}
	return &imap.SearchData{All: imap.SeqSet{{Start: 2, Stop: 2}, {Start: 5, Stop: 7}}, Min: 2, Max: 7, Count: 4, ModSeq: 917162500}, nil
}

func (s condStoreSession) HighestModSeq() (uint64, error) { return 715194045007, nil }

func (s condStoreSession) Resync(w *FetchWriter, p *QResyncParams) error {
	s.record("RESYNC %d %d %v %v %v", p.UIDValidity, p.ModSeq, p.KnownUIDs, p.SeqMatchSeqs, p.SeqMatchUIDs)
	if err := w.WriteVanished(imap.UIDSet{{Start: 41, Stop: 41}, {Start: 43, Stop: 116}}, true); err != nil {
		return err
	}
	m := w.CreateMessage(1)
	m.WriteUID(49)
	m.WriteFlags([]imap.Flag{imap.FlagSeen})
	m.WriteModSeq(90060115194045000)
	return m.Close()
}

var condStoreCaps = func() imap.CapSet {
	caps := testCaps.Copy()
	caps[imap.CapCondStore] = struct{}{}
	caps[imap.CapQResync] = struct{}{}
	return caps
}()

// RFC 7162's example exchanges, replayed against the parser and the
// encoder (the answers come from condStoreSession).
func TestRFC7162Exchanges(t *testing.T) {
	login := []string{"C: l1 LOGIN alice secret\r\n", "S: l1 OK"}
	tests := []struct {
		name   string
		script []string
		calls  []string // calls the session must have seen, in order
	}{
		{"3.1.2.1 SELECT (CONDSTORE) gets HIGHESTMODSEQ", []string{
			"C: a SELECT INBOX (CONDSTORE)\r\n", "S: * 1 EXISTS", "S: * 0 RECENT", "S: * OK [UIDVALIDITY 3857529045]",
			"S: * OK [UIDNEXT", "S: * FLAGS", "S: * OK [PERMANENTFLAGS", "S: * OK [HIGHESTMODSEQ 715194045007]",
			"S: a OK [READ-WRITE]",
		}, []string{"SELECT condstore"}},
		{"3.1.4 FETCH (CHANGEDSINCE) enables CONDSTORE", []string{
			"C: s SELECT INBOX\r\n", "S~ s OK",
			"C: s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n", "S: * 1 FETCH (UID 4 MODSEQ (12121231000))",
			// 3.1: the first enabling command while selected owes it.
			"S: * OK [HIGHESTMODSEQ 715194045007]", "S: s100 OK",
			"C: s101 FETCH 1 (MODSEQ)\r\n", "S: * 1 FETCH (UID 4 MODSEQ (12121231000))", "S: s101 OK",
		}, []string{"FETCH 1:* changedsince=12345 modseq=true vanished=false", "FETCH 1 changedsince=0 modseq=true vanished=false"}},
		{"3.1.3 STORE (UNCHANGEDSINCE) with MODIFIED", []string{
			"C: s SELECT INBOX\r\n", "S~ s OK",
			"C: d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
			"S: * 5 FETCH (MODSEQ (320162350))", "S: * OK [HIGHESTMODSEQ 715194045007]",
			"S: d105 OK [MODIFIED 7,9] Conditional STORE failed",
		}, []string{"STORE 5,7,9 unchangedsince=320162338,true"}},
		{"3.1.3 UNCHANGEDSINCE 0", []string{
			"C: s SELECT INBOX\r\n", "S~ s OK",
			"C: a STORE 7 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)\r\n", "S: * 5 FETCH", "S: * OK [HIGHESTMODSEQ", "S: a OK [MODIFIED 7,9]",
		}, []string{"STORE 7 unchangedsince=0,true"}},
		{"3.1.5 SEARCH MODSEQ", []string{
			"C: s SELECT INBOX\r\n", "S~ s OK",
			"C: a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n", "S: * SEARCH 2 5 6 7 (MODSEQ 917162500)", "S: * OK [HIGHESTMODSEQ", "S: a OK",
			"C: t SEARCH RETURN (ALL) MODSEQ 620162338\r\n", `S: * ESEARCH (TAG "t") ALL 2,5:7 MODSEQ 917162500`, "S: t OK",
		}, []string{`SEARCH modseq=620162338 "/flags/\\draft" all`, `SEARCH modseq=620162338 "" `}},
		{"3.2.7 EXPUNGE answers HIGHESTMODSEQ", []string{
			"C: x ENABLE CONDSTORE\r\n", "S: * ENABLED CONDSTORE", "S: x OK",
			"C: s SELECT INBOX\r\n", "S~ s OK",
			"C: A202 EXPUNGE\r\n", "S: A202 OK [HIGHESTMODSEQ 715194045007]",
		}, nil},
		{"3.1.6 STATUS HIGHESTMODSEQ", []string{
			"C: A042 STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)\r\n",
			"S: * STATUS blurdybloop (MESSAGES 1 UIDNEXT 2 HIGHESTMODSEQ 7011231777)", "S: A042 OK",
		}, nil},
		{"3.2.3 ENABLE QRESYNC", []string{
			"C: x ENABLE QRESYNC\r\n", "S: * ENABLED QRESYNC", "S: x OK",
		}, nil},
		{"3.2.5 SELECT (QRESYNC) before ENABLE is BAD", []string{
			"C: A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n", "S: A02 BAD",
			"C: A03 NOOP\r\n", "S: A03 OK",
		}, nil},
		{"3.2.5.1 SELECT (QRESYNC) resync", []string{
			"C: x ENABLE QRESYNC\r\n", "S: * ENABLED QRESYNC", "S: x OK",
			"C: A02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:5 41:45)))\r\n",
			"S: * 1 EXISTS", "S: * 0 RECENT", "S: * OK [UIDVALIDITY", "S: * OK [UIDNEXT", "S: * FLAGS", "S: * OK [PERMANENTFLAGS", "S: * OK [HIGHESTMODSEQ",
			"S: * VANISHED (EARLIER) 41,43:116", `S: * 1 FETCH (UID 49 FLAGS (\Seen) MODSEQ (90060115194045000))`,
			"S: A02 OK [READ-WRITE]",
			"C: A03 SELECT INBOX (QRESYNC (67890007 90060115194045000))\r\n",
			"S: * OK [CLOSED]", "S: * 1 EXISTS", "S: * 0 RECENT", "S: * OK [UIDVALIDITY", "S: * OK [UIDNEXT", "S: * FLAGS", "S: * OK [PERMANENTFLAGS", "S: * OK [HIGHESTMODSEQ",
			"S: * VANISHED (EARLIER) 41,43:116", "S: * 1 FETCH", "S: A03 OK",
		}, []string{"RESYNC 67890007 90060115194045000 41:211,214:541 1:5 41:45", "RESYNC 67890007 90060115194045000   "}},
		{"3.2.6 UID FETCH (CHANGEDSINCE VANISHED)", []string{
			"C: x ENABLE QRESYNC\r\n", "S: * ENABLED QRESYNC", "S: x OK",
			"C: s SELECT INBOX\r\n", "S~ s OK",
			"C: A04 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
			"S: * VANISHED (EARLIER) 300:310,405,411", "S: * 1 FETCH (UID 4 MODSEQ", "S: A04 OK",
			"C: A05 FETCH 1 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n", "S: A05 BAD",
			"C: A06 UID FETCH 1 (FLAGS) (VANISHED)\r\n", "S: A06 BAD",
		}, []string{"FETCH 300:500 changedsince=12345 modseq=true vanished=true"}},
		{"3.2.6 VANISHED without ENABLE QRESYNC is BAD", []string{
			"C: s SELECT INBOX\r\n", "S~ s OK",
			"C: A04 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n", "S: A04 BAD",
			"C: A05 FETCH 1 (FLAGS) (CHANGEDSINCE 0)\r\n", "S: A05 BAD",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeSession{}
			tc := startServerWith(t, Options{Caps: condStoreCaps}, condStoreSession{fake}, fake)
			for _, step := range append(append([]string(nil), login...), tt.script...) {
				if s, ok := strings.CutPrefix(step, "C: "); ok {
					tc.send(s)
				} else if s, ok := strings.CutPrefix(step, "S~ "); ok {
					skipTo(tc, s)
				} else {
					tc.expect(strings.TrimPrefix(step, "S: "))
				}
			}
			var got []string
			for _, c := range fake.called() {
				for _, w := range []string{"SELECT cond", "FETCH", "STORE", "SEARCH", "RESYNC"} {
					if strings.HasPrefix(c, w) {
						got = append(got, c)
					}
				}
			}
			if tt.calls != nil && fmt.Sprint(got) != fmt.Sprint(tt.calls) {
				t.Errorf("session calls %q, want %q", got, tt.calls)
			}
		})
	}
}

// A client that only ENABLEs CONDSTORE gets MODSEQ in unsolicited FETCH;
// one that ENABLEs QRESYNC gets VANISHED for an expunge instead of
// EXPUNGE, one for a run of expunges (RFC 7162 3.1.4, 3.2.10).
func TestUnsolicitedModSeqAndVanished(t *testing.T) {
	for _, tt := range []struct {
		enable, flags, expunge string
	}{
		{"CONDSTORE", `* 1 FETCH (UID 10 FLAGS (\Seen) MODSEQ (42))`, "* 2 EXPUNGE"},
		{"QRESYNC", `* 1 FETCH (UID 10 FLAGS (\Seen) MODSEQ (42))`, "* VANISHED 20,30"},
		{"IMAP4rev2", `* 1 FETCH (UID 10 FLAGS (\Seen))`, "* 2 EXPUNGE"},
	} {
		t.Run(tt.enable, func(t *testing.T) {
			fake := &fakeSession{}
			box := NewMailboxTracker(3)
			fake.tracker = box.NewSession()
			tc := startServerWith(t, Options{Caps: condStoreCaps}, condStoreSession{fake}, fake)
			tc.login()
			tc.send("e ENABLE " + tt.enable + "\r\n")
			skipTo(tc, "e OK")
			box.QueueMessageFlagsModSeq(1, 10, []imap.Flag{imap.FlagSeen}, 42, nil)
			box.QueueExpungeUID(2, 20)
			box.QueueExpungeUID(2, 30) // one VANISHED for both
			tc.send("n NOOP\r\n")
			lines := tc.until("n")
			want := []string{tt.flags, tt.expunge}
			if len(lines) < 3 || lines[0] != want[0] || lines[1] != want[1] {
				t.Errorf("NOOP got %q, want %q then the tagged OK", lines, want)
			}
		})
	}
}

// skipTo reads lines until one starts with prefix.
func skipTo(tc *testConn, prefix string) {
	tc.t.Helper()
	for {
		l := tc.line()
		if l == "" {
			tc.t.Fatalf("connection ended waiting for %q", prefix)
		}
		if strings.HasPrefix(l, prefix) {
			return
		}
	}
}
