package abuse_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pochta/pochta/abuse"
)

// A pre-login slot is ended with EndLoginTimeout once its login timeout
// passes, and its place is given back; a slot that logged in is not.
func TestLoginTimeoutEndsOnlyConnectionsNotLoggedIn(t *testing.T) {
	c := abuse.NewConnections(10, 100)
	c.SetLoginTimeout(200 * time.Millisecond)
	var mu sync.Mutex
	ended := map[string]string{}
	admit := func(name string) *abuse.Slot {
		s, why := c.Admit(netip.MustParseAddr("192.0.2.1"), func(reason string) {
			mu.Lock()
			ended[name] = reason
			mu.Unlock()
		})
		if s == nil {
			t.Fatalf("%s refused: %s", name, why)
		}
		return s
	}
	user := admit("user")
	user.LoggedIn()
	admit("stranger")
	deadline := time.Now().Add(waitLimit)
	for {
		mu.Lock()
		reason, done := ended["stranger"]
		mu.Unlock()
		if done {
			if reason != abuse.EndLoginTimeout {
				t.Errorf("stranger ended for %q, want %q", reason, abuse.EndLoginTimeout)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a connection that never logged in was never ended")
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if r, ok := ended["user"]; ok {
		t.Errorf("the logged-in connection was ended (%s); it was admitted first, so its timeout had passed", r)
	}
	if n := c.Count(); n != 1 {
		t.Errorf("%d connections counted after the timeout, want 1", n)
	}
}

// A client sending only complete NOOPs before login is closed at the
// login timeout on both protocols (SMTP 421, IMAP BYE), though every
// NOOP is answered and resets the idle bound; a user logged in before
// it stays.
func TestNoopsBeforeLoginDoNotHoldAConnection(t *testing.T) {
	conns := abuse.NewConnections(0, 0)
	// Long enough for the users below to log in on a loaded machine.
	conns.SetLoginTimeout(2 * time.Second)
	submission, imap := servers(t, nil, conns)

	// The users log in first: their login timeouts pass first too.
	user := textproto.NewConn(dial(t, submission))
	if _, _, err := user.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	smtpCmd(t, user, 250, "EHLO client.example.test")
	smtpCmd(t, user, 235, "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+password)))
	imapUser := dial(t, imap)
	ru := bufio.NewReader(imapUser)
	ru.ReadString('\n')
	fmt.Fprintf(imapUser, "a LOGIN %s \"%s\"\r\n", alice, password)
	if line := tagged(t, ru, "a"); !strings.HasPrefix(line, "a OK") {
		t.Fatalf("IMAP LOGIN: %q", line)
	}

	stranger := textproto.NewConn(dial(t, submission))
	if _, _, err := stranger.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	ic := dial(t, imap)
	r := bufio.NewReader(ic)
	r.ReadString('\n')
	start := time.Now()
	code := 0
	for i := 0; time.Since(start) < waitLimit; i++ {
		stranger.PrintfLine("NOOP")
		var err error
		if code, _, err = stranger.ReadResponse(0); err != nil || code != 250 {
			break
		}
		time.Sleep(20 * time.Millisecond) // the client's pace, one NOOP per 20 ms
	}
	if code != 421 {
		t.Errorf("SMTP stranger sending NOOPs: last reply %d, want 421", code)
	}
	if _, _, err := stranger.ReadResponse(0); err == nil {
		t.Error("SMTP stranger still connected after 421")
	}

	var last string
	for i := 0; time.Since(start) < 2*waitLimit; i++ {
		fmt.Fprintf(ic, "n%d NOOP\r\n", i)
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		last = line
		if !strings.HasPrefix(line, fmt.Sprintf("n%d OK", i)) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(last, "* BYE") {
		t.Errorf("IMAP stranger sending NOOPs: last line %q, want * BYE", last)
	}

	smtpCmd(t, user, 250, "NOOP")
	fmt.Fprintf(imapUser, "b NOOP\r\n")
	if line := tagged(t, ru, "b"); !strings.HasPrefix(line, "b OK") {
		t.Errorf("logged-in IMAP user after the login timeout: %q", line)
	}
}
