package main

import (
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
)

// Two daemons on one database: bob's session in IDLE on node B is told,
// within a second each, of a flag change and an expunge another session of
// his made through node A, and a NOOP on B after A's next delivery shows it.
func TestPostgresIdleOnOtherNodeSeesFlagsAndExpunges(t *testing.T) {
	const bob, pw = "bob@example.test", "pw-bob-long-one"
	conf := startPostgresNodes(t, [2]string{"alice@example.test", "pw-alice-long"}, [2]string{bob, pw})
	for _, s := range []string{"one", "two"} {
		submitMail(t, conf[0].SMTP.Submission, "alice@example.test", "pw-alice-long", bob, s)
	}

	watcher := newIMAPScript(t, conf[1].IMAP.Listen)
	watcher.ok("LOGIN " + bob + " " + pw)
	if !watcher.has(watcher.ok("SELECT INBOX"), "* 2 EXISTS") {
		t.Fatal("B's SELECT does not show the two messages")
	}
	watcher.send("i IDLE")
	watcher.waitFor("+", time.Second*5)

	actor := newIMAPScript(t, conf[0].IMAP.Listen)
	actor.ok("LOGIN " + bob + " " + pw)
	actor.ok("SELECT INBOX")
	actor.ok("STORE 1 +FLAGS (\\Flagged)")
	got := watcher.waitFor("* 1 FETCH", time.Second)
	if !strings.Contains(got, `\Flagged`) {
		t.Fatalf("B's IDLE told %q, want message 1 \\Flagged", got)
	}
	actor.ok("STORE 2 +FLAGS (\\Deleted)")
	actor.ok("EXPUNGE")
	watcher.waitFor("* 2 EXPUNGE", time.Second)
	watcher.send("DONE")
	watcher.waitFor("i OK", 5*time.Second)

	submitMail(t, conf[0].SMTP.Submission, "alice@example.test", "pw-alice-long", bob, "three")
	deadline := time.Now().Add(time.Second)
	for {
		if watcher.has(watcher.ok("NOOP"), "* 2 EXISTS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("NOOP on B did not show A's delivery within a second")
		}
	}
}

// imapScript is a line-by-line IMAP conversation for tests.
type imapScript struct {
	t    *testing.T
	conn net.Conn
	r    *textproto.Reader
	n    int
}

func newIMAPScript(t *testing.T, addr string) *imapScript {
	t.Helper()
	conn, r := imapDial(t, addr)
	t.Cleanup(func() { conn.Close() })
	return &imapScript{t: t, conn: conn, r: r}
}

func (s *imapScript) send(line string) { fmt.Fprintf(s.conn, "%s\r\n", line) }

func (s *imapScript) line(d time.Duration) (string, error) {
	s.conn.SetDeadline(time.Now().Add(d))
	return s.r.ReadLine()
}

// ok runs cmd and returns its untagged lines, failing unless it ends OK.
func (s *imapScript) ok(cmd string) []string {
	s.t.Helper()
	s.n++
	tag := fmt.Sprintf("c%d", s.n)
	s.send(tag + " " + cmd)
	var lines []string
	for {
		line, err := s.line(10 * time.Second)
		if err != nil {
			s.t.Fatalf("IMAP %s: %v", cmd, err)
		}
		if strings.HasPrefix(line, tag+" ") {
			if !strings.HasPrefix(line, tag+" OK") {
				s.t.Fatalf("IMAP %s: %s", cmd, line)
			}
			return lines
		}
		lines = append(lines, line)
	}
}

// waitFor reads until a line starting with prefix, failing after d.
func (s *imapScript) waitFor(prefix string, d time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			s.t.Fatalf("no %q within %s", prefix, d)
		}
		line, err := s.line(left)
		if err != nil {
			s.t.Fatalf("no %q within %s: %v", prefix, d, err)
		}
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

func (s *imapScript) has(lines []string, want string) bool { return slices.Contains(lines, want) }

// A keyword set through node A is in the FLAGS of a SELECT through node B
// right after, every time (B reads what other nodes changed in the
// mailbox before answering SELECT; imaptest's stress mode found one
// missing).
func TestPostgresSelectOnOtherNodeAnnouncesNewKeywords(t *testing.T) {
	const bob, pw = "bob@example.test", "pw-bob-long-one"
	conf := startPostgresNodes(t, [2]string{bob, pw})
	submitMail(t, conf[0].SMTP.Submission, bob, pw, bob, "keywords")
	a := newIMAPScript(t, conf[0].IMAP.Listen)
	a.ok("LOGIN " + bob + " " + pw)
	a.ok("SELECT INBOX")
	b := newIMAPScript(t, conf[1].IMAP.Listen)
	b.ok("LOGIN " + bob + " " + pw)
	b.ok("SELECT INBOX") // node B has the mailbox loaded, and keeps it
	for i := range 30 {
		kw := fmt.Sprintf("$Fresh%d", i)
		a.ok("STORE 1 +FLAGS (" + kw + ")")
		c := newIMAPScript(t, conf[1].IMAP.Listen)
		c.ok("LOGIN " + bob + " " + pw)
		var flags string
		for _, l := range c.ok("SELECT INBOX") {
			if strings.HasPrefix(l, "* FLAGS ") {
				flags = l
			}
		}
		if !strings.Contains(flags, kw+" ") && !strings.Contains(flags, kw+")") {
			t.Fatalf("round %d: SELECT on B answered %q, without %s set through A", i, flags, kw)
		}
		c.send("z LOGOUT")
	}
}

// startPostgresNodes starts two daemons (in-process) on one new database
// holding users (address, password) and returns their settings.
func startPostgresNodes(t *testing.T, users ...[2]string) [2]*config.Config {
	t.Helper()
	cfgs, dirs, _ := postgresNodeConfigs(t, pgtest.New(t))
	for _, u := range users {
		if code, _, stderr := pochta(t, u[1]+"\n", "user", "add", u[0], "--password-stdin", "--config", cfgs[0]); code != 0 {
			t.Fatalf("user add: exit %d: %s", code, stderr)
		}
	}
	var conf [2]*config.Config
	for i := range cfgs {
		startDaemon(t, cfgs[i], dirs[i]+"/data")
		c, _, err := config.Resolve(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		conf[i] = c
	}
	return conf
}
