package imapd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/internal/mimetest"
)

// sendRaw writes bytes as they are, for literals.
func (c *rawConn) sendRaw(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func TestMultiAppendStoresEveryMessageWithOneAppendUID(t *testing.T) {
	e := newTestEnv(t)
	c := e.raw()
	c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
	caps := strings.Join(c.ok("b CAPABILITY"), "")
	if !strings.Contains(caps, " MULTIAPPEND") {
		t.Fatalf("MULTIAPPEND not advertised: %q", caps)
	}
	m1 := string(testMessage(alice, bob, "first", "one"))
	m2 := string(testMessage(alice, bob, "second", "two"))
	m3 := string(testMessage(alice, bob, "third", "three"))
	c.sendRaw(fmt.Sprintf("c APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Flagged) \"01-Feb-2026 10:00:00 +0000\" {%d+}\r\n%s {%d}\r\n",
		len(m1), m1, len(m2), m2, len(m3)))
	c.expect("+")
	c.sendRaw(m3 + "\r\n")
	line := c.expect("c ")
	st := e.inbox(bob)
	want := fmt.Sprintf("c OK [APPENDUID %d 1:3]", st.UIDValidity)
	if !strings.HasPrefix(line, want) {
		t.Fatalf("MULTIAPPEND answered %q, want %q", line, want)
	}
	if st.Messages != 3 || st.Unseen != 2 {
		t.Errorf("INBOX has %d messages, %d unseen; want 3 and 2", st.Messages, st.Unseen)
	}
	cl := e.loginSelect(bob, "INBOX", nil)
	msgs, err := cl.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Envelope: true, Flags: true, InternalDate: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for i, subject := range []string{"first", "second", "third"} {
		if msgs[i].Envelope.Subject != subject {
			t.Errorf("message %d is %q, want %q (the order of the command)", i+1, msgs[i].Envelope.Subject, subject)
		}
	}
	if !hasFlag(msgs[1].Flags, imap.FlagFlagged) || msgs[1].InternalDate.Month() != 2 {
		t.Errorf("message 2 lost its own flags or date: %v %v", msgs[1].Flags, msgs[1].InternalDate)
	}
}

// A literal over the limit in the middle of a MULTIAPPEND (LITERAL+, so
// its bytes come anyway) is refused with TOOBIG: nothing is stored, not
// even the messages before it, and the bytes of the refused literal, which
// here look like a command, are not run.
func TestMultiAppendRefusedLiteralStoresNothingAndRunsNothing(t *testing.T) {
	e := newTestEnv(t, withMaxMessageSize(400))
	c := e.raw()
	c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
	c.ok("b CREATE Keep")
	m1 := string(testMessage(alice, bob, "small", "fits"))
	evil := "x DELETE Keep\r\n" + strings.Repeat("y", 500) + "\r\n"
	c.sendRaw(fmt.Sprintf("c APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n", len(m1), m1, len(evil), evil))
	line := c.expect("c ")
	if !strings.HasPrefix(line, "c NO [TOOBIG]") {
		t.Fatalf("over-limit literal in MULTIAPPEND answered %q, want NO [TOOBIG]", line)
	}
	c.ok("d NOOP")
	if st := e.inbox(bob); st.Messages != 0 {
		t.Errorf("INBOX holds %d messages after a refused MULTIAPPEND, want 0", st.Messages)
	}
	if _, err := e.store.MailboxStatus(context.Background(), bob, "Keep"); err != nil {
		t.Errorf("the refused literal ran as a command: %v", err)
	}

	// Each message under the limit, together over the limit of the
	// whole command (twice the APPEND limit): refused as well.
	m := string(testMessage(alice, bob, "part", strings.Repeat("z", 200)))
	c.sendRaw(fmt.Sprintf("e APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s {%d+}\r\n%s\r\n", len(m), m, len(m), m, len(m), m))
	if line := c.expect("e "); !strings.HasPrefix(line, "e NO [TOOBIG]") {
		t.Fatalf("MULTIAPPEND over the total answered %q, want NO [TOOBIG]", line)
	}
	c.ok("f NOOP")
	if st := e.inbox(bob); st.Messages != 0 {
		t.Errorf("INBOX holds %d messages after a MULTIAPPEND over the total, want 0", st.Messages)
	}
}

// One message the intake refuses (MIME nested past the limit) fails the
// whole command.
func TestMultiAppendOneRefusedMessageStoresNone(t *testing.T) {
	e := newTestEnv(t)
	c := e.raw()
	c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
	good := string(testMessage(alice, bob, "good", "fine"))
	deep := string(mimetest.Nested(1000))
	c.sendRaw(fmt.Sprintf("c APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n", len(good), good, len(deep), deep))
	if line := c.expect("c "); !strings.HasPrefix(line, "c NO") {
		t.Fatalf("MULTIAPPEND with a too-deep message answered %q, want NO", line)
	}
	if st := e.inbox(bob); st.Messages != 0 || st.UIDNext != 1 {
		t.Errorf("INBOX after the refused MULTIAPPEND: %d messages, UIDNEXT %d; want 0 and 1", st.Messages, st.UIDNext)
	}
	// A syntax error after the last literal stores nothing either.
	c.sendRaw(fmt.Sprintf("d APPEND INBOX {%d+}\r\n%s junk\r\n", len(good), good))
	if line := c.expect("d "); !strings.HasPrefix(line, "d BAD") {
		t.Fatalf("APPEND with junk after the literal answered %q, want BAD", line)
	}
	if st := e.inbox(bob); st.Messages != 0 {
		t.Errorf("INBOX holds %d messages after a bad APPEND, want 0", st.Messages)
	}
}

// RFC 6855 4: each message of a MULTIAPPEND may be a UTF8 data item, mixed
// with plain literals; all are stored, byte for byte. Before ENABLE
// UTF8=ACCEPT the same command is BAD and stores nothing, and so is one
// whose UTF8 item lacks its closing parenthesis.
func TestMultiAppendTakesUTF8DataItems(t *testing.T) {
	e := newTestEnv(t)
	c := e.raw()
	c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
	m1 := "From: " + alice + "\r\nSubject: \u041f\u0440\u0438\u0432\u0435\u0442\r\n\r\none\r\n"
	m2 := string(testMessage(alice, bob, "plain", "two"))
	m3 := "From: " + alice + "\r\nSubject: \u00e9t\u00e9\r\n\r\nthree\r\n"
	cmd := fmt.Sprintf("%%s APPEND INBOX UTF8 (~{%d+}\r\n%s) (\\Seen) {%d+}\r\n%s \"01-Feb-2026 10:00:00 +0000\" UTF8 (~{%d+}\r\n%s)\r\n",
		len(m1), m1, len(m2), m2, len(m3), m3)
	c.sendRaw(fmt.Sprintf(cmd, "b"))
	if line := c.expect("b "); !strings.HasPrefix(line, "b BAD") {
		t.Fatalf("MULTIAPPEND with UTF8 before ENABLE answered %q, want BAD", line)
	}
	c.ok("c NOOP")
	if st := e.inbox(bob); st.Messages != 0 {
		t.Fatalf("INBOX holds %d messages after a refused APPEND UTF8, want 0", st.Messages)
	}
	c.ok("d ENABLE UTF8=ACCEPT")
	c.sendRaw(fmt.Sprintf("g APPEND INBOX UTF8 (~{%d+}\r\n%s\r\n", len(m1), m1))
	if line := c.expect("g "); !strings.HasPrefix(line, "g BAD") {
		t.Fatalf("APPEND UTF8 without its closing ) answered %q, want BAD", line)
	}
	if st := e.inbox(bob); st.Messages != 0 {
		t.Fatalf("INBOX holds %d messages after an APPEND UTF8 without ), want 0", st.Messages)
	}
	c.sendRaw(fmt.Sprintf(cmd, "f"))
	st := e.inbox(bob)
	if line, want := c.expect("f "), fmt.Sprintf("f OK [APPENDUID %d 1:3]", st.UIDValidity); !strings.HasPrefix(line, want) {
		t.Fatalf("MULTIAPPEND with UTF8 items answered %q, want %q", line, want)
	}
	cl := e.loginSelect(bob, "INBOX", nil)
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{m1, m2, m3} {
		if got := string(msgs[i].FindBodySection(section)); got != want {
			t.Errorf("message %d is %q, want %q byte for byte", i+1, got, want)
		}
	}
}
