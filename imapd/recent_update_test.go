package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// RFC 3501 7.3.2 (imaptest copy): a message that arrives while a session
// has the mailbox selected is recent in that session, and the client is
// told the new RECENT count with the EXISTS.
func TestNewMessageIsAnnouncedAsRecent(t *testing.T) {
	e := newTestEnv(t)
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	r.ok("s SELECT INBOX")
	e.appendMsg(alice, "INBOX", testMessage("a@example.org", alice, "one", "body"))
	e.appendMsg(alice, "INBOX", testMessage("a@example.org", alice, "two", "body"))
	got := rawLines(r, "n NOOP")
	if !slices.Contains(got, "* 2 EXISTS") || !slices.Contains(got, "* 2 RECENT") {
		t.Errorf("NOOP after two deliveries = %q, want * 2 EXISTS and * 2 RECENT", got)
	}
	if got := rawLines(r, "m NOOP"); len(got) != 0 {
		t.Errorf("second NOOP = %q, want nothing new", got)
	}
}

// RFC 3501 7.2.6 (imaptest copy): a keyword new to the mailbox is in an
// untagged FLAGS before the first FETCH that shows it.
func TestNewKeywordIsInFlagsBeforeFetchShowsIt(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", testMessage("a@example.org", alice, "one", "body"))
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	r.ok("s SELECT INBOX")
	got := rawLines(r, "t STORE 1 +FLAGS ($kw1)")
	flags := slices.IndexFunc(got, func(l string) bool { return strings.HasPrefix(l, "* FLAGS (") && strings.Contains(l, "$kw1") })
	fetch := slices.IndexFunc(got, func(l string) bool { return strings.HasPrefix(l, "* 1 FETCH") && strings.Contains(l, "$kw1") })
	if flags < 0 || fetch < 0 || flags > fetch {
		t.Errorf("STORE +FLAGS ($kw1) = %q, want * FLAGS with $kw1 before the FETCH", got)
	}
}

// RFC 3501 6.3.1 (imaptest select): SELECT and EXAMINE tell an IMAP4rev1
// client the sequence number of the first message without \Seen.
func TestSelectNamesFirstUnseen(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", testMessage("a@example.org", alice, "one", "body"), imap.FlagSeen)
	e.appendMsg(alice, "INBOX", testMessage("a@example.org", alice, "two", "body"))
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	for _, cmd := range []string{"e EXAMINE INBOX", "s SELECT INBOX"} {
		if got := rawLines(r, cmd); !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "* OK [UNSEEN 2]") }) {
			t.Errorf("%s = %q, want * OK [UNSEEN 2]", cmd, got)
		}
	}
}
