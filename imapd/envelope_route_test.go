package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// RFC 3501 7.4.2 (imaptest fetch-envelope): the source route of an
// obsolete <@route:user@host> address is the adl of its address structure,
// stored with the message and sent by FETCH ENVELOPE.
func TestFetchEnvelopeKeepsSourceRoute(t *testing.T) {
	e := newTestEnv(t)
	e.appendMsg(alice, "INBOX", []byte("Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: <@route:user@domain>\r\n"+
		"To: Real <@a.example,@b.example:u@h.example>\r\n\r\nbody\r\n"))
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	r.ok("s SELECT INBOX")
	got := strings.Join(rawLines(r, "f FETCH 1 ENVELOPE"), "\n")
	want := `* 1 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain")) ` +
		`((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) ` +
		`(("Real" "@a.example,@b.example" "u" "h.example")) NIL NIL NIL NIL))`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
