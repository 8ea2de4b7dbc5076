package imapd

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// shutdownInBackground starts Shutdown and returns once it has begun (the
// listener refuses connections); its result arrives on the channel.
func (e *testEnv) shutdownInBackground(grace time.Duration) <-chan error {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			return done
		}
		c.Close()
		if time.Now().After(deadline) {
			e.t.Fatal("the listener still accepts after Shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rest reads everything the server sends until it closes the connection.
func (c *rawConn) rest() []string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if line != "" {
			lines = append(lines, line)
		}
		if err == io.EOF {
			return lines
		}
		if err != nil {
			c.t.Fatalf("reading to the end: %v (so far %q)", err, lines)
		}
	}
}

// wantOKThenBye checks that the lines are the tagged OK of tag, then BYE,
// and nothing after.
func wantOKThenBye(t *testing.T, tag string, lines []string) {
	t.Helper()
	if len(lines) != 2 || !strings.HasPrefix(lines[0], tag+" OK") || !strings.HasPrefix(lines[1], "* BYE ") {
		t.Fatalf("after the APPEND the client got %q, want %s OK then * BYE", lines, tag)
	}
}

func (e *testEnv) draftsCount() uint32 {
	e.t.Helper()
	st, err := e.store.MailboxStatus(context.Background(), bob, "Drafts")
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Messages
}

// The two windows the daemon's shutdown used to lose an APPEND in: after
// the continuation, before the session's Append began (Close saw no APPEND
// and said BYE), and after Append returned, before go-imap had read the
// CRLF ending the command and written the tagged OK (BYE closed the
// connection first).
func TestShutdownAnswersAppendInFlightThenSaysBye(t *testing.T) {
	body := string(testMessage(bob, bob, "draft at shutdown", "still typing"))

	t.Run("shutdown after the continuation", func(t *testing.T) {
		e := newTestEnv(t)
		c := e.raw()
		c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
		c.send(fmt.Sprintf("b APPEND Drafts {%d}", len(body)))
		c.expect("+")
		done := e.shutdownInBackground(waitLimit)
		if _, err := io.WriteString(c.conn, body+"\r\n"); err != nil {
			t.Fatal(err)
		}
		wantOKThenBye(t, "b", c.rest())
		if err := <-done; err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		if n := e.draftsCount(); n != 1 {
			t.Errorf("Drafts holds %d messages after the APPEND answered OK, want 1", n)
		}
	})

	t.Run("shutdown after the literal, before the CRLF that ends the command", func(t *testing.T) {
		e := newTestEnv(t)
		c := e.raw()
		c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
		c.send(fmt.Sprintf("b APPEND Drafts {%d}", len(body)))
		c.expect("+")
		// The whole literal but not the CRLF that ends the command: under
		// MULTIAPPEND another message may still follow, so nothing is
		// stored yet, and the shutdown has to wait for the command.
		if _, err := io.WriteString(c.conn, body); err != nil {
			t.Fatal(err)
		}
		done := e.shutdownInBackground(waitLimit)
		c.send("")
		wantOKThenBye(t, "b", c.rest())
		if err := <-done; err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		if n := e.draftsCount(); n != 1 {
			t.Errorf("Drafts holds %d messages after the APPEND answered OK, want 1", n)
		}
	})
}

func TestShutdownSaysByeAtOnceToIdleClients(t *testing.T) {
	e := newTestEnv(t)
	greeted := e.raw() // not logged in
	waiting := e.raw() // logged in, between commands
	waiting.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, alice, password))
	waiting.ok("b SELECT INBOX")
	idling := e.raw() // in IDLE
	idling.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, alice, password))
	idling.ok("b SELECT INBOX")
	idling.send("c IDLE")
	idling.expect("+")

	// A grace longer than the test's wait: the clients must not use it up.
	done := e.shutdownInBackground(time.Minute)
	for name, c := range map[string]*rawConn{"not logged in": greeted, "between commands": waiting, "in IDLE": idling} {
		if lines := c.rest(); len(lines) != 1 || lines[0] != "* BYE "+byeText+"\r\n" {
			t.Errorf("client %s got %q at shutdown, want one * BYE %s", name, lines, byeText)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Shutdown still waits although every client was idle")
	}
}

func TestShutdownClosesCommandsStillInFlightWhenTheGraceEnds(t *testing.T) {
	e := newTestEnv(t)
	c := e.raw()
	c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
	c.send("b APPEND Drafts {100}")
	c.expect("+")
	// The literal never comes.
	done := e.shutdownInBackground(200 * time.Millisecond)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "in flight") {
			t.Errorf("Shutdown = %v, want the commands still in flight named", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Shutdown did not return when its context ended")
	}
	if lines := c.rest(); len(lines) != 0 {
		t.Errorf("the unfinished APPEND got %q, want the connection closed", lines)
	}
	if n := e.draftsCount(); n != 0 {
		t.Errorf("Drafts holds %d messages after an unfinished APPEND, want 0", n)
	}
}
