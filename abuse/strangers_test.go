package abuse_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/abuse"
)

// dialAs connects to addr from a loopback alias such as 127.0.0.2 (Linux
// routes all of 127/8 to lo without setup).
func dialAs(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: waitLimit}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	return c
}

// strangers opens n idle connections to each of smtp and imap from each
// of the addresses, and reads each greeting (so each was admitted, or
// evicted an older one, before the next is opened).
func strangers(t *testing.T, n int, smtpAddr, imapAddr string, from ...string) {
	t.Helper()
	for i := range n {
		for _, local := range from {
			c := dialAs(t, local, smtpAddr)
			if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220") {
				t.Fatalf("stranger %d from %s (SMTP): %q, %v; want a greeting, strangers are evicted, not refused", i, local, line, err)
			}
			c = dialAs(t, local, imapAddr)
			if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
				t.Fatalf("stranger %d from %s (IMAP): %q, %v", i, local, line, err)
			}
		}
	}
}

func TestStrangersCannotLockOutAUser(t *testing.T) {
	conns := abuse.NewConnections(50, 20)
	submission, imap := servers(t, nil, conns)
	from := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	// 40 idle pre-login connections, 10 from each address (5 SMTP, 5 IMAP).
	strangers(t, 5, submission, imap, from...)
	if n := conns.PreLogin(); n > 10 {
		t.Errorf("%d pre-login connections held, want at most half of max_connections (10)", n)
	}

	// The user, from 127.0.0.1, logs in and sends over SMTP...
	text := textproto.NewConn(dial(t, submission))
	if _, _, err := text.ReadResponse(220); err != nil {
		t.Fatalf("user's SMTP greeting: %v", err)
	}
	smtpCmd(t, text, 250, "EHLO client.example.test")
	smtpCmd(t, text, 235, "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+password)))
	// ...and logs in over IMAP while strangers keep coming.
	c := dial(t, imap)
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("user's IMAP greeting %q", line)
	}
	strangers(t, 5, submission, imap, from...)
	fmt.Fprintf(c, "a LOGIN %s \"%s\"\r\nb SELECT INBOX\r\n", alice, password)
	if line := tagged(t, r, "a "); !strings.HasPrefix(line, "a OK") {
		t.Fatalf("user's IMAP LOGIN among strangers: %q", line)
	}
	if line := tagged(t, r, "b "); !strings.HasPrefix(line, "b OK") {
		t.Fatalf("user's SELECT: %q", line)
	}
	// 40 more strangers: the logged-in sessions are never evicted.
	strangers(t, 5, submission, imap, from...)
	smtpCmd(t, text, 250, "MAIL FROM:<%s>", alice)
	smtpCmd(t, text, 250, "RCPT TO:<%s>", alice)
	smtpCmd(t, text, 354, "DATA")
	smtpCmd(t, text, 250, "Subject: hello\r\n\r\nstill here\r\n.")
	fmt.Fprintf(c, "c NOOP\r\n")
	if line := tagged(t, r, "c "); !strings.HasPrefix(line, "c OK") {
		t.Fatalf("user's IMAP session after more strangers: %q", line)
	}
	if n := conns.PreLogin(); n > 10 {
		t.Errorf("%d pre-login connections held, want at most 10", n)
	}
}

func smtpCmd(t *testing.T, text *textproto.Conn, want int, format string, args ...any) {
	t.Helper()
	if err := text.PrintfLine(format, args...); err != nil {
		t.Fatal(err)
	}
	if code, msg, err := text.ReadResponse(want); err != nil {
		t.Fatalf("%s: %d %s: %v", strings.Fields(format)[0], code, msg, err)
	}
}

// tagged reads IMAP lines up to the one starting with tag.
func tagged(t *testing.T, r *bufio.Reader, tag string) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v", tag, err)
		}
		if strings.HasPrefix(line, tag) {
			return strings.TrimSpace(line)
		}
	}
}
