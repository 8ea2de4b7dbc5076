package protocol

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Exchanges from RFC 9051 and RFC 3501, replayed against the server.
func TestRFCExchanges(t *testing.T) {
	tests := []struct {
		name string
		// script alternates client lines ("C: ") and expected server line
		// prefixes ("S: ").
		script []string
	}{
		{"3501 6.2.3 LOGIN with literals", []string{
			"C: a001 LOGIN {5}\r\n", "S: + Ready",
			"C: alice {6}\r\n", "S: + Ready",
			"C: secret\r\n", "S: a001 OK [CAPABILITY IMAP4rev2 IMAP4rev1",
		}},
		{"9051 6.3.2 SELECT", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK",
			"C: A142 SELECT INBOX\r\n",
			"S: * 1 EXISTS", "S: * 0 RECENT", "S: * OK [UIDVALIDITY 7] UIDs valid",
			"S: * OK [UIDNEXT 2] Predicted next UID", `S: * FLAGS (\Seen \Deleted)`,
			`S: * OK [PERMANENTFLAGS (\Seen \Deleted \*)] Permanent flags`,
			"S: A142 OK [READ-WRITE] SELECT completed",
		}},
		{"9051 6.3.11 STATUS", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK",
			"C: A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
			"S: * STATUS blurdybloop (MESSAGES 1 UIDNEXT 2)", "S: A042 OK STATUS completed",
		}},
		{"9051 6.3.12 APPEND", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK",
			"C: A003 APPEND saved-messages (\\Seen) {10}\r\n", "S: + Ready",
			"C: Hello Joe!\r\n", "S: A003 OK [APPENDUID 7 2] APPEND completed",
		}},
		{"9051 6.3.9 LIST", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK",
			"C: A101 LIST \"\" *\r\n",
			`S: * LIST (\HasNoChildren) "/" INBOX`, `S: * LIST (\HasNoChildren) "/" Entw&APw-rfe`,
			`S: * LIST (\HasNoChildren) "/" Archive/2024`, "S: A101 OK LIST completed",
			"C: A102 LIST Archive %\r\n", `S: * LIST (\HasNoChildren) "/" Archive/2024`, "S: A102 OK",
		}},
		{"9051 6.4.5 FETCH", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK", "C: s1 SELECT INBOX\r\n", "S: *", "S: *", "S: *", "S: *", "S: *", "S: *", "S: s1 OK",
			"C: A654 FETCH 1 (FLAGS BODY[HEADER.FIELDS (SUBJECT)])\r\n",
			`S: * 1 FETCH (FLAGS (\Seen) BODY[HEADER.FIELDS (SUBJECT)] {18}`, "S: Subject: hello", "S: ", "S: )",
			"S: A654 OK FETCH completed",
			"C: A655 UID FETCH 1 BODY.PEEK[TEXT]<3.5>\r\n",
			"S: * 1 FETCH (UID 1 BODY[TEXT]<3> {5}", "S: there)", "S: A655 OK",
		}},
		{"9051 6.4.6 STORE", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK", "C: s1 SELECT INBOX\r\n", "S: *", "S: *", "S: *", "S: *", "S: *", "S: *", "S: s1 OK",
			"C: A003 STORE 2:4 +FLAGS (\\Deleted)\r\n", "S: A003 OK STORE completed",
			"C: A004 UID COPY 1 Trash\r\n", "S: A004 OK [COPYUID 7 1 5] UID COPY completed",
			"C: A005 MOVE 1 Trash\r\n", "S: * OK [COPYUID 7 1 5] Messages moved", "S: A005 OK",
		}},
		{"4731 ESEARCH and 3501 SEARCH", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK", "C: s1 SELECT INBOX\r\n", "S: *", "S: *", "S: *", "S: *", "S: *", "S: *", "S: s1 OK",
			"C: A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", "S: * SEARCH 1", "S: A282 OK",
			"C: A283 UID SEARCH RETURN (MIN COUNT) ALL\r\n", `S: * ESEARCH (TAG "A283") UID MIN 1 COUNT 1`, "S: A283 OK",
			"C: A284 SEARCH RETURN (SAVE) ALL\r\n", "S: A284 OK",
		}},
		{"2177 IDLE", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK",
			"C: A002 IDLE\r\n", "S: + idling", "S: * 2 EXISTS",
			"C: DONE\r\n", "S: A002 OK IDLE completed",
		}},
		{"2971 ID before login", []string{
			"C: a023 ID (\"name\" \"sodr\" \"version\" \"19.34\")\r\n", `S: * ID ("name" "pochta")`, "S: a023 OK",
			"C: a024 ID NIL\r\n", `S: * ID ("name" "pochta")`, "S: a024 OK",
		}},
		{"4959 SASL-IR", []string{
			"C: a01 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n", "S: a01 OK [CAPABILITY",
		}},
		{"4616 PLAIN after a continuation", []string{
			"C: a01 AUTHENTICATE PLAIN\r\n", "S: + ", "C: AGFsaWNlAHdyb25n\r\n", "S: a01 NO [AUTHENTICATIONFAILED]",
			"C: a02 AUTHENTICATE PLAIN\r\n", "S: + ", "C: *\r\n", "S: a02 BAD",
		}},
		{"5161 ENABLE", []string{
			"C: l1 LOGIN alice secret\r\n", "S: l1 OK",
			"C: t1 ENABLE IMAP4rev2 CONDSTORE\r\n", "S: * ENABLED IMAP4rev2", "S: t1 OK",
			"C: t2 LIST \"\" Entw*\r\n", `S: * LIST (\HasNoChildren) "/" "Entwürfe"`, "S: t2 OK",
		}},
		{"3501 LOGOUT", []string{
			"C: A023 LOGOUT\r\n", "S: * BYE", "S: A023 OK LOGOUT completed",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startServer(t, Options{})
			for _, step := range tt.script {
				if s, ok := strings.CutPrefix(step, "C: "); ok {
					tc.send(s)
				} else {
					tc.expect(strings.TrimPrefix(step, "S: "))
				}
			}
		})
	}
}

// Issue 12: an unknown command before login is BAD and the connection
// stays open, up to a bound on bad commands in a row.
func TestUnknownCommandBeforeLoginIsBAD(t *testing.T) {
	tc := startServer(t, Options{})
	tc.send("a1 FROBNICATE\r\n")
	tc.expect("a1 BAD Unknown command FROBNICATE")
	tc.send("a2 NOOP\r\n")
	tc.expect("a2 OK")
	for i := range maxBadBeforeLogin - 1 {
		tc.send(fmt.Sprintf("b%d XYZZY\r\n", i))
		tc.expect(fmt.Sprintf("b%d BAD", i))
	}
	tc.send("last XYZZY\r\n")
	tc.expect("last BAD")
	tc.expect("* BYE Too many bad commands")
	if l := tc.line(); l != "" {
		t.Errorf("after BYE got %q, want the connection closed", l)
	}
}

// Issue 9 item 3 at the server: an APPEND with an over-limit LITERAL+
// literal full of command lines is refused, and none of those lines runs.
func TestRefusedLiteralPlusRunsNoCommand(t *testing.T) {
	tc := startServer(t, Options{})
	tc.login()
	body := strings.Repeat("x CREATE evil\r\n", 100) // 1500 bytes, limit 1000
	tc.send(fmt.Sprintf("a APPEND INBOX {%d+}\r\n%s\r\n", len(body), body))
	tc.expect("a NO [TOOBIG]")
	tc.send("b NOOP\r\n")
	tc.expect("b OK")
	for _, c := range tc.sess.called() {
		if strings.HasPrefix(c, "CREATE") {
			t.Fatalf("a line of the refused literal ran: %s (calls %q)", c, tc.sess.called())
		}
	}
	if len(tc.sess.appended) != 0 {
		t.Errorf("appended %d messages, want none", len(tc.sess.appended))
	}
}

// Before login only LITERAL- is on offer: a non-synchronising literal over
// 4096 bytes is BAD [TOOBIG] and thrown away.
func TestLiteralMinusBeforeLogin(t *testing.T) {
	tc := startServer(t, Options{})
	junk := strings.Repeat("z LOGOUT\r\n", 500)
	tc.send(fmt.Sprintf("a LOGIN {%d+}\r\n%s pw\r\n", len(junk), junk))
	tc.expect("a BAD [TOOBIG]")
	tc.send("b NOOP\r\n")
	tc.expect("b OK")
}

func TestSyntaxErrorsAreBADAndTheConnectionGoesOn(t *testing.T) {
	tc := startServer(t, Options{})
	tc.login()
	tc.send("s SELECT INBOX\r\n")
	tc.until("s")
	for _, tt := range []struct{ cmd, want string }{
		// Issue 12: 0 is no message number.
		{"FETCH 0:5 FLAGS", "BAD Invalid sequence set"},
		{"FETCH 1 (FLAGS", "BAD"},
		{"FETCH 1 BODY[4.TEXT.X]", "BAD"},
		{"STORE 1 FLAGS.LOUD (\\Seen)", "BAD"},
		{"SEARCH FROB", "BAD Unknown SEARCH key"},
		// Issue 12: a bad modified UTF-7 name is refused, never
		// SERVERBUG; NO, not BAD, since "mailbox" is any astring
		// (RFC 3501 9) and imaptest's atoms script expects NO.
		{"SELECT &Jjo", "NO [CANNOT] Mailbox name"},
		{"CREATE &AGE-", "NO [CANNOT] Mailbox name"},
		{"LOGIN a b", "BAD [CLIENTBUG] LOGIN: Already logged in"},
		{"CREATE " + strings.Repeat("x", 70000), "BAD Command line longer"},
	} {
		tc.send("t " + tt.cmd + "\r\n")
		if l := tc.line(); !strings.HasPrefix(l, "t "+tt.want) {
			t.Errorf("%.40s: got %q, want t %s", tt.cmd, l, tt.want)
		}
		tc.send("n NOOP\r\n")
		tc.expect("n OK")
	}
	if slices.ContainsFunc(tc.sess.called(), func(c string) bool { return strings.HasPrefix(c, "CREATE") }) {
		t.Errorf("a refused CREATE reached the session: %q", tc.sess.called())
	}
}

// An HTTP request sent to the IMAP port ends the connection at its header
// lines: the IMAP lines in its body never run.
func TestHTTPRequestEndsTheConnection(t *testing.T) {
	tc := startServer(t, Options{})
	tc.send("POST / HTTP/1.1\r\nHost: mail.example.org\r\nContent-Type: text/plain\r\n" +
		"Content-Length: 40\r\nConnection: close\r\n\r\na LOGIN alice secret\r\nb CREATE evil\r\n")
	for {
		l := tc.line()
		if l == "" {
			break
		}
		if strings.HasPrefix(l, "a ") || strings.HasPrefix(l, "b ") {
			t.Fatalf("a line of the HTTP body was answered: %q", l)
		}
	}
	if len(tc.sess.called()) != 0 {
		t.Errorf("the session was called: %q", tc.sess.called())
	}
}

func TestCommandsNeedTheirState(t *testing.T) {
	tc := startServer(t, Options{})
	tc.send("a SELECT INBOX\r\n")
	tc.expect("a BAD [CLIENTBUG] SELECT: Log in first")
	tc.login()
	tc.send("b FETCH 1 FLAGS\r\n")
	tc.expect("b BAD [CLIENTBUG] FETCH: Select a mailbox first")
	// Over the APPEND limit: refused without a continuation request, so
	// the client sends nothing more of it.
	tc.send("c APPEND INBOX {5000}\r\n")
	tc.expect("c NO [TOOBIG]")
	tc.send("d NOOP\r\n")
	tc.expect("d OK")
}

// Shutdown: a BYE asked for while an APPEND literal is arriving waits for
// the APPEND's tagged OK; between commands it goes at once.
func TestByeWaitsForTheCommandInProgress(t *testing.T) {
	tc := startServer(t, Options{})
	tc.login()
	tc.send("a APPEND INBOX {10}\r\n")
	tc.expect("+ Ready")
	tc.send("Hello")
	bye := make(chan error, 1)
	go func() { bye <- tc.server.Bye("shutting down") }()
	// Bye must not return before the APPEND is answered; poll that it is
	// still waiting while the literal is incomplete.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		tc.server.mu.Lock()
		wanted := tc.server.byeWanted
		tc.server.mu.Unlock()
		if wanted {
			break
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-bye:
		t.Fatalf("Bye returned (%v) before the APPEND was answered", err)
	default:
	}
	tc.send(" Joe!\r\n")
	tc.expect("a OK [APPENDUID 7 2]")
	tc.expect("* BYE shutting down")
	if err := <-bye; err != nil {
		t.Errorf("Bye: %v", err)
	}
	if len(tc.sess.appended) != 1 {
		t.Errorf("appended %d messages, want 1", len(tc.sess.appended))
	}
}

func TestByeBetweenCommandsAndInIdle(t *testing.T) {
	tc := startServer(t, Options{})
	tc.login()
	if err := tc.server.Bye("now"); err != nil {
		t.Fatal(err)
	}
	tc.expect("* BYE now")

	tc = startServer(t, Options{})
	tc.login()
	tc.send("i IDLE\r\n")
	tc.expect("+ idling")
	tc.expect("* 2 EXISTS")
	deadline := time.Now().Add(5 * time.Second)
	for {
		tc.server.mu.Lock()
		idling := tc.server.idling
		tc.server.mu.Unlock()
		if idling || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := tc.server.Bye("idle over"); err != nil {
		t.Fatal(err)
	}
	tc.expect("* BYE idle over")
}
