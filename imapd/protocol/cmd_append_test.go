package protocol

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// The APPENDUID of a MULTIAPPEND lists the UIDs in the order of the
// messages; a de-duplicated Sent copy keeps its older UID in its place.
func TestUIDListKeepsTheOrderOfTheMessages(t *testing.T) {
	for _, tc := range []struct {
		uids []imap.UID
		want string
	}{
		{[]imap.UID{7}, "7"},
		{[]imap.UID{4, 5, 6}, "4:6"},
		{[]imap.UID{4, 5, 2}, "4:5,2"},
		{[]imap.UID{9, 3, 10, 11}, "9,3,10:11"},
	} {
		if got := uidList(tc.uids); got != tc.want {
			t.Errorf("uidList(%v) = %q, want %q", tc.uids, got, tc.want)
		}
	}
}

// RFC 6855 4: with UTF8=ACCEPT enabled, APPEND takes the UTF8 data item,
// `UTF8 (literal8)`, after the optional flags and date, with a
// synchronising or a non-synchronising literal8; before ENABLE it is BAD,
// and a malformed one is BAD with nothing stored. The connection goes on.
func TestAppendUTF8DataItem(t *testing.T) {
	msg := "Subject: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\r\n\r\nx\r\n"
	evil := "x LOGOUT\r\n" // refused bytes that must not run
	tc := startServer(t, Options{})
	tc.login()

	tc.send(fmt.Sprintf("a APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n", len(evil), evil))
	tc.expect("a BAD [CLIENTBUG] APPEND UTF8 needs ENABLE UTF8=ACCEPT")
	tc.send("b NOOP\r\n")
	tc.expect("b OK")
	if n := len(tc.sess.appended); n != 0 {
		t.Fatalf("APPEND UTF8 before ENABLE stored %d messages", n)
	}

	tc.send("e ENABLE UTF8=ACCEPT\r\n")
	tc.until("e")
	for i, cmd := range []string{
		fmt.Sprintf("c%d APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n", 0, len(msg), msg),
		fmt.Sprintf("c%d APPEND INBOX (\\Seen) \"02-Dec-2026 10:00:00 +0000\" utf8 (~{%d+}\r\n%s)\r\n", 1, len(msg), msg),
	} {
		tc.send(cmd)
		tc.expect(fmt.Sprintf("c%d OK", i))
	}
	tc.send(fmt.Sprintf("s APPEND INBOX UTF8 (~{%d}\r\n", len(msg)))
	tc.expect("+ ")
	tc.send(msg + ")\r\n")
	tc.expect("s OK")
	if n := len(tc.sess.appended); n != 3 || tc.sess.appended[0] != msg {
		t.Fatalf("stored %d messages (%q), want 3 byte for byte", n, tc.sess.appended)
	}

	for i, bad := range []string{
		fmt.Sprintf("m%d APPEND INBOX UTF8 ~{%d+}\r\n%s\r\n", 0, len(msg), msg),    // no parenthesis
		fmt.Sprintf("m%d APPEND INBOX UTF9 (~{%d+}\r\n%s)\r\n", 1, len(msg), msg),  // not UTF8
		fmt.Sprintf("m%d APPEND INBOX UTF8 (~{%d+}\r\n%s\r\n", 2, len(msg), msg),   // no closing )
		fmt.Sprintf("m%d APPEND INBOX UTF8 ({%d+}\r\n%s)\r\n", 3, len(evil), evil), // a literal, not literal8
		fmt.Sprintf("m%d APPEND INBOX UTF8 ({%d}\r\n", 4, len(evil)),               // the same, synchronising
	} {
		tc.send(bad)
		tc.expect(fmt.Sprintf("m%d BAD", i))
		tc.send("n NOOP\r\n")
		tc.expect("n OK")
	}
}

// The UTF8 data item's literal8 is taken even where BINARY is not offered:
// RFC 6855 4 makes it part of APPEND under UTF8=ACCEPT.
func TestAppendUTF8Literal8WithoutBinary(t *testing.T) {
	msg := "Subject: \xd0\x9f\r\n\r\nx\r\n"
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapLiteralPlus: {}, imap.CapEnable: {}, imap.CapUTF8Accept: {}}
	tc := startServer(t, Options{Caps: caps})
	tc.login()
	tc.send("e ENABLE UTF8=ACCEPT\r\n")
	tc.until("e")
	tc.send(fmt.Sprintf("a APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n", len(msg), msg))
	tc.expect("a OK")
	if n := len(tc.sess.appended); n != 1 || tc.sess.appended[0] != msg {
		t.Fatalf("stored %d messages (%q), want the one byte for byte", n, tc.sess.appended)
	}
}
