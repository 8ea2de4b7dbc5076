package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// imaptest atoms: every atom character may be in a mailbox name. A name
// that is not valid modified UTF-7 names no mailbox (NO, RFC 3501 5.1.3
// leaves such names to the server), and LIST with it as a pattern lists
// nothing; the connection stays usable.
func TestAtomSpecialsInMailboxNames(t *testing.T) {
	e := newTestEnv(t)
	r := e.raw()
	r.ok(fmt.Sprintf("l LOGIN %s %q", alice, password))
	name := "!#$&'+,-.0123456789:;<=>?@^_`|[}"
	if got := r.reply("s SELECT " + name); !strings.HasPrefix(got, "s NO") {
		t.Errorf("SELECT %s = %q, want NO", name, got)
	}
	r.ok(`t LIST "" ` + name + "%*")
	r.ok("n NOOP")
}
