package storagetest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// killChildEnv carries the store's location to the child process of
// durableAcrossKill; it is set only in that child.
const killChildEnv = "POCHTA_STORAGETEST_KILL_CHILD"

// ackPrefix starts the line the child prints after each write returned nil.
const ackPrefix = "storagetest-ack "

// killAfterAcks is how many acknowledged writes the parent waits for
// before it kills the child while it keeps writing.
const killAfterAcks = 25

// durableAcrossKill: a write that returned nil survives the process being
// killed (SIGKILL, no Close) in the middle of further writes, and the
// store opens again afterwards with its UIDs continuing. The writes run
// in a child process (the test binary again, running only this subtest).
func durableAcrossKill(t *testing.T, b Backend) {
	if location := os.Getenv(killChildEnv); location != "" {
		killChild(t, b, location)
		return
	}
	s, location := b.withUsers(t, alice)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+location)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the child: %v", err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var acked []string
	var output []string
	killed := false
	deadline := time.After(2 * time.Minute)
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break read
			}
			if subject, ok := strings.CutPrefix(line, ackPrefix); ok {
				acked = append(acked, subject)
			} else {
				output = append(output, line)
			}
			if len(acked) == killAfterAcks && !killed {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatalf("kill the child: %v", err)
				}
				killed = true
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("the child wrote %d messages in two minutes; output:\n%s\n%s", len(acked), strings.Join(output, "\n"), stderr.String())
		}
	}
	waitErr := cmd.Wait()
	if !killed || len(acked) < killAfterAcks {
		t.Fatalf("the child ended (%v) after %d acknowledged writes, before the kill; output:\n%s\n%s", waitErr, len(acked), strings.Join(output, "\n"), stderr.String())
	}

	s = b.Open(t, location)
	inbox := mustMailbox(t, s, alice, storage.Inbox)
	uids := mustUIDs(t, s, alice, inbox.ID)
	msgs, err := s.Messages(context.Background(), alice, inbox.ID, uids, storage.LoadOptions{Envelope: true})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	var maxUID imap.UID
	for _, m := range msgs {
		stored[m.Envelope.Subject] = true
		maxUID = max(maxUID, m.UID)
	}
	t.Logf("%d writes acknowledged before the kill, %d stored", len(acked), len(msgs))
	var lost []string
	for _, subject := range acked {
		if !stored[subject] {
			lost = append(lost, subject)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost in the kill, the first %q", len(lost), lost[0])
	}
	if int(inbox.Messages) != len(msgs) || inbox.UIDNext <= maxUID {
		t.Errorf("INBOX after the kill %+v with %d messages up to UID %d", inbox, len(msgs), maxUID)
	}
	if a := mustAppend(t, s, alice, storage.Inbox, simpleMessage("after the kill")); a.UID <= maxUID {
		t.Errorf("UID %d after the kill reuses one up to %d", a.UID, maxUID)
	}
}

// killChild writes messages one after another, printing an ack line after
// each returned nil, until the parent kills it (a bounded number).
func killChild(t *testing.T, b Backend, location string) {
	s := b.Open(t, location)
	for i := range 5000 {
		subject := fmt.Sprintf("kill %d", i)
		if _, err := s.Append(context.Background(), alice, storage.Inbox, &storage.NewMessage{Raw: []byte(simpleMessage(subject))}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		fmt.Fprintln(os.Stdout, ackPrefix+subject)
	}
}

// runPattern is the -test.run pattern that selects exactly the test named.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
