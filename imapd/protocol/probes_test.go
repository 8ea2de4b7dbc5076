package protocol

import (
	"strings"
	"testing"
	"time"
)

// RFC 2177: only DONE ends IDLE. A client trickling anything else gets a
// tagged BAD at its first wrong byte, not at the 35-minute bound of the
// wait, and the connection goes on at the next command.
func TestIdleEndsAtTheFirstByteThatIsNotDone(t *testing.T) {
	tc := startServer(t, Options{})
	tc.login()
	tc.send("i IDLE\r\n")
	tc.expect("+ idling")
	tc.expect("* 2 EXISTS")
	tc.send("D")
	tc.send("x") // no CRLF: the line never completes
	tc.expect("i BAD Expected DONE")
	tc.send("yz\r\nn NOOP\r\n")
	tc.expect("n OK")

	// DONE in any case still ends it.
	tc.send("j IDLE\r\n")
	tc.expect("+ idling")
	tc.expect("* 2 EXISTS")
	tc.send("dOnE\r\n")
	tc.expect("j OK IDLE completed")
	tc.send("k IDLE\r\n")
	tc.expect("+ idling")
	tc.expect("* 2 EXISTS")
	tc.send("DONEX\r\n")
	tc.expect("k BAD Expected DONE")
}

// RFC 7888 4: a server advertises LITERAL+ or LITERAL-, never both.
// Before login it is LITERAL- (4096-byte non-synchronising literals),
// after login LITERAL+ (APPEND of any size within the limit).
func TestCapabilityListsOneLiteralExtension(t *testing.T) {
	check := func(when, caps string, want, notWant string) {
		t.Helper()
		words := strings.Fields(caps)
		has := func(w string) bool {
			for _, x := range words {
				if strings.Trim(x, "[]") == w {
					return true
				}
			}
			return false
		}
		if !has(want) || has(notWant) {
			t.Errorf("%s: %q, want %s and not %s", when, caps, want, notWant)
		}
	}
	tc := startServer(t, Options{})
	tc.send("a CAPABILITY\r\n")
	check("CAPABILITY before login", tc.expect("* CAPABILITY "), "LITERAL-", "LITERAL+")
	tc.expect("a OK")
	tc.send("l LOGIN alice secret\r\n")
	check("the login's CAPABILITY code", tc.expect("l OK [CAPABILITY "), "LITERAL+", "LITERAL-")
	tc.send("b CAPABILITY\r\n")
	check("CAPABILITY after login", tc.expect("* CAPABILITY "), "LITERAL+", "LITERAL-")
	tc.expect("b OK")
}

// The reviewer's LITERAL+ probes: an APPEND announcing a 99,999,999-byte
// non-synchronising literal, followed by command lines, and a LOGIN
// announcing {5000+} before login followed by a NOOP. The lines are the
// literal's bytes: none of them may run.
func TestAnnouncedLiteralsNeverRunTheirLines(t *testing.T) {
	tc := startServer(t, Options{})
	tc.login()
	tc.send("a APPEND INBOX {99999999+}\r\n" + strings.Repeat("b CREATE evil\r\n", 50))
	for {
		l := tc.line()
		if l == "" || strings.HasPrefix(l, "a ") || strings.HasPrefix(l, "* BYE") {
			break
		}
		if strings.HasPrefix(l, "b ") {
			t.Fatalf("a line of the literal was answered: %q", l)
		}
	}
	for _, c := range tc.sess.called() {
		if strings.HasPrefix(c, "CREATE") {
			t.Fatalf("a line of the refused literal ran: %s", c)
		}
	}

	tc = startServer(t, Options{})
	tc.send("a LOGIN {5000+}\r\nc NOOP\r\n")
	// The server reads the 5000 bytes to throw them away: nothing is
	// answered until they have come, least of all the NOOP.
	tc.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if l, err := tc.r.ReadString('\n'); err == nil {
		t.Fatalf("within the refused LOGIN literal got %q; the NOOP inside it ran", l)
	}
	tc.send(strings.Repeat("x", 5000-len("c NOOP\r\n")) + " pw\r\n")
	tc.expect("a BAD [TOOBIG]")
	tc.send("d NOOP\r\n")
	tc.expect("d OK")
}
