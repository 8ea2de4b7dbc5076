package smtpd

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/slowclient"
)

// TestTricklingClientIsClosedWithin421 covers the places where a client
// sending a byte at a time used to keep its connection: inside AUTH, go-smtp
// took the timeout as a pause and read on under a fresh deadline.
func TestTricklingClientIsClosedWithin421(t *testing.T) {
	const bound = 400 * time.Millisecond
	cases := []struct {
		name     string
		setup    []string // commands answered before the trickle
		trickled string
	}{
		{"command line", nil, "NOOP NOOP NOOP "},
		{"AUTH LOGIN exchange", []string{"AUTH LOGIN"}, "YWxpY2VAZXhhbXBsZS50ZXN0"},
		{"DATA", []string{authPlain(alice, testPassword), "MAIL FROM:<" + alice + ">", "RCPT TO:<" + bob + ">", "DATA"}, "Subject: slow\r\n\r\nbody "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := startServer(t, func(o *Options) {
				o.AllowInsecureAuth = true
				o.ReadTimeout = bound
			})
			c := greeted(t, "", env.submission)
			for _, cmd := range tc.setup {
				if code, msg := c.cmd(t, cmd); code >= 400 {
					t.Fatalf("%s: %d %s", cmd, code, msg)
				}
			}
			stop := slowclient.Trickle(c.Conn, tc.trickled, 20*time.Millisecond)
			defer stop()
			res := slowclient.ReadUntilClosed(c.Conn, bufio.NewReader(c.Conn), 10*bound)
			if !res.Closed {
				t.Fatalf("connection still open %v after the %v bound; server said %q", 10*bound, bound, res.Lines)
			}
			if !strings.HasPrefix(res.Last(), "421 4.4.2") || !strings.Contains(res.Last(), "timeout") {
				t.Errorf("last reply %q, want 421 4.4.2 ... timeout", res.Last())
			}
			if res.After > bound+2*time.Second {
				t.Errorf("closed after %v, want within the %v bound (+2 s)", res.After, bound)
			}
		})
	}
}
