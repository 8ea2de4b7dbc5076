package imapd

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var fetchModSeqRE = regexp.MustCompile(`^\* (\d+) FETCH \((.*)\)$`)

// modseqWatch follows what one raw CONDSTORE client is told of message 1:
// the MODSEQ of each FETCH and the last FLAGS.
type modseqWatch struct {
	t      *testing.T
	last   uint64
	flags  string
	events []string
}

func (m *modseqWatch) see(lines []string) {
	m.t.Helper()
	for _, l := range lines {
		f := fetchModSeqRE.FindStringSubmatch(l)
		if f == nil || f[1] != "1" {
			continue
		}
		m.events = append(m.events, l)
		if i := strings.Index(f[2], "FLAGS ("); i >= 0 {
			m.flags = f[2][i+len("FLAGS (") : i+strings.IndexByte(f[2][i:], ')')]
		}
		i := strings.Index(f[2], "MODSEQ (")
		if i < 0 {
			continue
		}
		v := f[2][i+len("MODSEQ ("):]
		n, err := strconv.ParseUint(v[:strings.IndexByte(v, ')')], 10, 64)
		if err != nil {
			m.t.Fatalf("%q: %v", l, err)
		}
		if n < m.last {
			m.t.Errorf("MODSEQ of message 1 went from %d back to %d (RFC 7162 3.1.2); responses: %q", m.last, n, m.events)
		}
		m.last = n
	}
}

// RFC 7162 3.1 (imaptest stress: "MODSEQ dropped"): the updates another
// session queued for this one must never reach the client after its own
// STORE told it a newer state of the same message: the client would go
// back to an older MODSEQ and older FLAGS. Two ways they were late: after
// a STORE .SILENT (whose MODSEQ-only response went out before the queued
// updates), and behind an expunge that a STORE may not announce (RFC 9051
// 7.5.1), flushed by the next command.
func TestOwnStoreIsNeverFollowedByAnOlderModSeq(t *testing.T) {
	for _, tc := range []struct {
		name     string
		other    []string // the other session's commands, before ours
		store    string
		wantSeen bool
	}{
		{
			name:  "silent store",
			other: []string{"b1 STORE 1 +FLAGS (\\Flagged)"},
			store: "a1 STORE 1 +FLAGS.SILENT (\\Seen)",
		},
		{
			name: "queued behind an expunge",
			other: []string{"b1 STORE 2 +FLAGS (\\Deleted)", "b2 EXPUNGE",
				"b3 STORE 1 +FLAGS (\\Flagged)"},
			store: "a1 STORE 1 +FLAGS (\\Seen)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			for i := range 3 {
				e.appendMsg(alice, "INBOX", testMessage(bob, alice, fmt.Sprint("m", i), "body"))
			}
			a, b := e.raw(), e.raw()
			for _, c := range []*rawConn{a, b} {
				c.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
				c.ok("s SELECT INBOX (CONDSTORE)")
			}
			w := &modseqWatch{t: t}
			w.see(rawLines(a, "a0 FETCH 1 (FLAGS MODSEQ)"))
			for _, cmd := range tc.other {
				b.ok(cmd)
			}
			w.see(rawLines(a, tc.store))
			w.see(rawLines(a, "a2 NOOP"))
			w.see(rawLines(a, "a3 NOOP"))
			if !strings.Contains(w.flags, `\Seen`) && !strings.Contains(tc.store, "SILENT") {
				t.Errorf("last FLAGS of message 1: (%s), want \\Seen (set by this client); responses %q", w.flags, w.events)
			}
			// What the client believes must be the stored state.
			w.see(rawLines(a, "a4 FETCH 1 (FLAGS MODSEQ)"))
			if !strings.Contains(w.flags, `\Seen`) || !strings.Contains(w.flags, `\Flagged`) {
				t.Errorf("stored FLAGS (%s), want \\Seen and \\Flagged", w.flags)
			}
		})
	}
}
