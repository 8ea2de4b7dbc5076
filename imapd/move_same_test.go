package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// RFC 6851 3.3 with RFC 3501 7.3.1: MOVE into the selected mailbox itself
// copies the message under a new UID and expunges the original; the client
// is told both, so it still counts one message.
func TestMoveIntoSameMailboxAnnouncesTheCopy(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", testMessage("a@example.org", alice, "one", "body"))
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	r.ok("s SELECT INBOX")
	got := rawLines(r, "m MOVE 1 INBOX")
	t.Logf("%q", got)
	exists := slices.IndexFunc(got, func(l string) bool { return strings.HasSuffix(l, " EXISTS") })
	expunge := slices.Index(got, "* 1 EXPUNGE")
	if exists < 0 || expunge < 0 {
		t.Fatalf("MOVE 1 INBOX: %q, want an EXPUNGE and an EXISTS", got)
	}
	// The original goes, then the copy arrives (imaptest's move script):
	// never a moment with both.
	if got[exists] != "* 1 EXISTS" || expunge > exists {
		t.Errorf("MOVE 1 INBOX: %q, want * 1 EXPUNGE then * 1 EXISTS", got)
	}
	// Counting as the client does: after the responses, one message.
	n := 1
	for _, l := range got {
		var k int
		if _, err := fmt.Sscanf(l, "* %d EXISTS", &k); err == nil {
			n = k
		} else if strings.HasSuffix(l, " EXPUNGE") {
			n--
		}
	}
	if n != 1 {
		t.Errorf("MOVE 1 INBOX: %q leaves the client counting %d messages, want 1", got, n)
	}
	if got := rawLines(r, "f FETCH 1 UID"); len(got) != 1 || !strings.Contains(got[0], "UID 2") {
		t.Errorf("FETCH 1 UID after MOVE = %q, want the copy (UID 2)", got)
	}
}
