package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/internal/testrelay"
	"github.com/pochta/pochta/storage"
)

// The two users every multi-node test has.
var (
	alice = [2]string{"alice@example.test", "pw-alice-long"}
	bob   = [2]string{"bob@example.test", "pw-bob-long-one"}
)

// node is one pochta daemon of a cluster on one PostgreSQL database.
type node struct {
	name string
	cfg  string         // config file
	c    *config.Config // its resolved settings (the listeners)
	dir  string
	proc *exec.Cmd // nil until start; the real binary
	gone chan struct{}
}

// newNodes writes the configs of n nodes (mx1, mx2, …) on one fresh
// database, each with extra appended (TOML tables), and adds alice and bob.
// None is started.
func newNodes(t *testing.T, n int, extra string) []*node {
	t.Helper()
	url := pgtest.New(t)
	nodes := make([]*node, n)
	for i := range nodes {
		dir := t.TempDir()
		cfg := writeConfig(t, dir)
		withNode(t, cfg, url, fmt.Sprintf("mx%d", i+1))
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(extra); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		c, _, err := config.Resolve(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &node{name: fmt.Sprintf("mx%d", i+1), cfg: cfg, c: c, dir: dir}
	}
	for _, u := range [][2]string{alice, bob} {
		if code, _, stderr := pochta(t, u[1]+"\n", "user", "add", u[0], "--password-stdin", "--config", nodes[0].cfg); code != 0 {
			t.Fatalf("user add: exit %d: %s", code, stderr)
		}
	}
	return nodes
}

// relayTo is the [email_queue] table sending other domains' mail to addr
// without TLS.
func relayTo(addr string) string {
	return fmt.Sprintf("\n[email_queue]\nrelay = %q\nrelay_tls = \"none\"\n", addr)
}

// pochtaBinary builds the pochta binary once per test binary: a node that
// is to be killed with SIGKILL must be a process of its own.
var pochtaBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pochta-bin-")
	if err != nil {
		return "", err
	}
	builtBinaryDir = dir
	bin := filepath.Join(dir, "pochta")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return bin, nil
})

// builtBinaryDir holds the binary pochtaBinary built; TestMain removes it.
var builtBinaryDir string

// start runs the node as a process of the real binary until the test ends
// (or kill), and returns once its control socket answers.
func (n *node) start(t *testing.T) {
	t.Helper()
	bin, err := pochtaBinary()
	if err != nil {
		t.Fatalf("building pochta: %v", err)
	}
	logPath := filepath.Join(n.dir, "pochta.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", n.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(gone)
	}()
	n.proc, n.gone = cmd, gone
	t.Cleanup(func() {
		select {
		case <-gone:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-gone:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Errorf("node %s did not stop within 30s of SIGTERM", n.name)
				<-gone
			}
		}
		if t.Failed() {
			text, _ := os.ReadFile(logPath)
			t.Logf("node %s log:\n%s", n.name, text)
		}
	})
	sock := filepath.Join(n.dir, "data", "pochta.sock")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case <-gone:
			t.Fatalf("node %s exited before listening (%v)", n.name, cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not open its control socket within 30s", n.name)
		}
		time.Sleep(20 * time.Millisecond) // polling a socket, not waiting for an outcome
	}
}

// kill ends the node with SIGKILL and returns once the process is gone.
func (n *node) kill(t *testing.T) {
	t.Helper()
	if err := n.proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.gone:
	case <-time.After(10 * time.Second):
		t.Fatalf("node %s still runs 10s after SIGKILL", n.name)
	}
}

// queueList is `pochta queue list --json` through the node's daemon.
func (n *node) queueList(t *testing.T) []storage.QueueEntry {
	t.Helper()
	code, stdout, stderr := pochta(t, "", "queue", "list", "--json", "--config", n.cfg)
	if code != 0 {
		t.Fatalf("queue list through %s: exit %d: %s", n.name, code, stderr)
	}
	var list []storage.QueueEntry
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatalf("queue list through %s: %v: %s", n.name, err, stdout)
	}
	return list
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond) // polling for the outcome, with a deadline
	}
}

// testMessage is a message with a body long enough to be cut in the middle
// (about 40 KB), every line of it naming id.
func testMessage(from, to, id string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.test>\r\n\r\n", from, to, id, id)
	b.Write(testBody(id))
	return b.Bytes()
}

func testBody(id string) []byte {
	var b bytes.Buffer
	for i := range 500 {
		fmt.Fprintf(&b, "%s line %03d: the quick brown fox jumps over the lazy dog\r\n", id, i)
	}
	return b.Bytes()
}

// messageID is the Message-ID of a message as testMessage wrote it (the id),
// or "" when it has none.
func messageID(data []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(m.Header.Get("Message-ID"), "<"), "@example.test>")
}

// Two daemons on one PostgreSQL database (issue 13): a session in IDLE on
// node B is told of a message submitted over node A's SMTP.
func TestPostgresIdleOnOtherNodeSeesDelivery(t *testing.T) {
	nodes := newNodes(t, 2, "")
	for _, n := range nodes {
		startDaemon(t, n.cfg, filepath.Join(n.dir, "data"))
	}
	a, b := nodes[0].c, nodes[1].c

	conn, err := net.DialTimeout("tcp", b.IMAP.Listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := textproto.NewReader(bufio.NewReader(conn))
	if _, err := r.ReadLine(); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range []string{"LOGIN bob@example.test pw-bob-long-one", "SELECT INBOX"} {
		tag := fmt.Sprintf("a%d", i)
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		for {
			line, err := r.ReadLine()
			if err != nil {
				t.Fatalf("IMAP %s: %v", cmd, err)
			}
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("IMAP %s: %s", cmd, line)
				}
				break
			}
		}
	}
	fmt.Fprintf(conn, "i IDLE\r\n")
	if line, err := r.ReadLine(); err != nil || !strings.HasPrefix(line, "+") {
		t.Fatalf("IDLE: %q, %v", line, err)
	}
	submitMail(t, a.SMTP.Submission, "alice@example.test", "pw-alice-long", "bob@example.test", "across nodes")
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := r.ReadLine()
		if err != nil {
			t.Fatalf("no EXISTS in IDLE on node B within 10s of the delivery through node A: %v", err)
		}
		if line == "* 1 EXISTS" {
			break
		}
	}
	fmt.Fprintf(conn, "DONE\r\n")
}

// Twenty messages to another domain, ten submitted through each node at
// once, with both nodes' queues running: the relay gets every one exactly
// once (the claim lets one node only relay an entry), and both nodes list
// all twenty as sent.
func TestPostgresTwoNodesRelayEachMessageOnce(t *testing.T) {
	relay := testrelay.Start(t)
	nodes := newNodes(t, 2, relayTo(relay.Addr))
	for _, n := range nodes {
		n.start(t)
		// One login first: the cache then answers the concurrent ones,
		// which would otherwise queue for the password checkers.
		if err := sendMail(n.c.SMTP.Submission, alice, bob[0], testMessage(alice[0], bob[0], "warm-up-"+n.name)); err != nil {
			t.Fatalf("submitting through %s: %v", n.name, err)
		}
	}
	const total = 20
	errs := make(chan error, total)
	var wg sync.WaitGroup
	for i := range total {
		n := nodes[i%2]
		id := fmt.Sprintf("out-%02d", i)
		wg.Go(func() {
			if err := sendMail(n.c.SMTP.Submission, alice, "x@remote.test", testMessage(alice[0], "x@remote.test", id)); err != nil {
				errs <- fmt.Errorf("submitting %s through %s: %w", id, n.name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	// Settled as sent, seen through either node: no attempt is left to
	// come, so the relay has everything it will ever get.
	for _, n := range nodes {
		waitFor(t, 90*time.Second, "every entry listed as sent through "+n.name, func() bool {
			sent := 0
			for _, e := range n.queueList(t) {
				if e.Status == storage.QueueSent {
					sent++
				}
			}
			return sent == total
		})
	}
	got := map[string]int{}
	for _, m := range relay.Accepted() {
		got[messageID(m.Data)]++
	}
	for i := range total {
		id := fmt.Sprintf("out-%02d", i)
		if got[id] != 1 {
			t.Errorf("the relay got %s %d times, want once", id, got[id])
		}
		delete(got, id)
	}
	for id, k := range got {
		t.Errorf("the relay got %d unexpected messages with Message-ID %q", k, id)
	}
}

// Node A is killed with SIGKILL while four clients submit to it: every
// message A answered 250 is in bob's INBOX read through node B, exactly
// once; one that got no 250 may be missing, and what B shows is complete
// (it parses and has its whole body).
func TestPostgresNodeKilledUnderLoadLosesNoAcknowledgedMail(t *testing.T) {
	nodes := newNodes(t, 2, "")
	for _, n := range nodes {
		n.start(t)
	}
	a, b := nodes[0], nodes[1]
	if err := sendMail(a.c.SMTP.Submission, alice, bob[0], testMessage(alice[0], bob[0], "warm-up")); err != nil {
		t.Fatalf("submitting through %s: %v", a.name, err)
	}
	const submitters, each = 4, 200
	var mu sync.Mutex
	acked := map[string]bool{"warm-up": true}
	tried := map[string]bool{"warm-up": true}
	finished := 0 // submitters that sent all theirs: the kill came too late
	var wg sync.WaitGroup
	for w := range submitters {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("load-%d-%03d", w, i)
				mu.Lock()
				tried[id] = true
				mu.Unlock()
				if err := sendMail(a.c.SMTP.Submission, alice, bob[0], testMessage(alice[0], bob[0], id)); err != nil {
					return // the kill
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
			mu.Lock()
			finished++
			mu.Unlock()
		})
	}
	waitFor(t, 60*time.Second, "20 messages acknowledged by node A", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) > 20
	})
	a.kill(t)
	wg.Wait() // every submitter fails at once: its connection is gone
	if finished != 0 {
		t.Fatalf("%d of %d submitters sent all their messages before the kill", finished, submitters)
	}

	c, err := imapclient.DialInsecure(b.c.IMAP.Listen, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(bob[0], bob[1]).Wait(); err != nil {
		t.Fatalf("LOGIN on %s: %v", b.name, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT on %s: %v", b.name, err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatalf("FETCH on %s: %v", b.name, err)
	}
	seen := map[string]int{}
	for _, m := range msgs {
		data := m.FindBodySection(&imap.FetchItemBodySection{})
		parsed, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Errorf("message %d on %s does not parse: %v", m.SeqNum, b.name, err)
			continue
		}
		id := messageID(data)
		body, err := io.ReadAll(parsed.Body)
		switch {
		case err != nil || !tried[id]:
			t.Errorf("message %d on %s is not one that was sent (Message-ID %q)", m.SeqNum, b.name, parsed.Header.Get("Message-ID"))
		case !bytes.Equal(body, testBody(id)):
			t.Errorf("message %s on %s is not whole: %d bytes of body, want %d", id, b.name, len(body), len(testBody(id)))
		}
		seen[id]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("%s got 250 from %s and is in bob's INBOX on %s %d times, want once", id, a.name, b.name, seen[id])
		}
	}
	t.Logf("%d messages acknowledged before the kill, %d in the INBOX on %s", len(acked), len(msgs), b.name)
}

// Node A claims a message to another domain and is killed with SIGKILL
// while the relay holds its DATA: node B relays it once A's lease has run
// out (queue.DefaultLease: [email_queue] has no key for it, so this test
// takes about two minutes), the relay gets it once, and `pochta queue list`
// through B shows it sent.
func TestPostgresNodeFinishesAKilledNodesAttemptAfterItsLease(t *testing.T) {
	relay := testrelay.Start(t)
	relay.Hold()
	nodes := newNodes(t, 2, relayTo(relay.Addr))
	a, b := nodes[0], nodes[1]
	a.start(t)
	submitMail(t, a.c.SMTP.Submission, alice[0], alice[1], "x@remote.test", "taken over")
	waitFor(t, 30*time.Second, "node A's attempt waits in DATA at the relay", func() bool { return relay.Holding() == 1 })
	// B starts only now, so it is A's claim for certain.
	b.start(t)
	a.kill(t)
	waitFor(t, 10*time.Second, "the relay drops the held transaction of the killed node", func() bool { return relay.Holding() == 0 })
	relay.Release()
	if got := relay.Accepted(); len(got) != 0 {
		t.Fatalf("the relay accepted %d messages from the killed node, want none", len(got))
	}
	list := b.queueList(t)
	if len(list) != 1 || list[0].Status != storage.QueueOutbox || list[0].LeaseOwner != a.name {
		t.Fatalf("queue through %s: %+v; want one outbox entry leased by %s", b.name, list, a.name)
	}
	leaseUntil := list[0].LeaseUntil

	waitFor(t, time.Until(leaseUntil)+time.Minute, "node B relays the entry after node A's lease ran out", func() bool {
		return len(relay.Accepted()) > 0
	})
	got := relay.Accepted()
	if len(got) != 1 || messageID(got[0].Data) != "taken.over" {
		t.Fatalf("the relay got %d messages, want the one node A had claimed", len(got))
	}
	if got[0].At.Before(leaseUntil) {
		t.Errorf("node B relayed the entry at %s, before node A's lease ran out at %s", got[0].At, leaseUntil)
	}
	waitFor(t, 30*time.Second, "the entry is listed as sent through node B", func() bool {
		list := b.queueList(t)
		return len(list) == 1 && list[0].Status == storage.QueueSent
	})
}

// sendMail submits msg through the submission port at addr as the user
// (address, password) to one recipient. nil means the server answered 250
// to DATA; QUIT after that is a courtesy whose failure is not reported.
func sendMail(addr string, user [2]string, to string, msg []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return err
	}
	defer c.Close()
	// Cleartext on loopback (allow_insecure_auth): the test daemon's
	// certificate is self-signed.
	if err := c.Auth(plainAuth{user[0], user[1]}); err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	if err := c.Mail(user[0]); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	c.Quit()
	return nil
}
