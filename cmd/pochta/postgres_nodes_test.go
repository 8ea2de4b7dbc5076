package main

import (
	"bufio"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
)

// Two daemons on one PostgreSQL database (issue 13): a session in IDLE on
// node B is told of a message submitted over node A's SMTP.
func TestPostgresIdleOnOtherNodeSeesDelivery(t *testing.T) {
	url := pgtest.New(t)
	var cfgs [2]string
	var dirs [2]string
	for i := range cfgs {
		dirs[i] = t.TempDir()
		cfgs[i] = writeConfig(t, dirs[i])
		withDatabase(t, cfgs[i], url)
	}
	text, err := os.ReadFile(cfgs[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgs[1], []byte(strings.Replace(string(text), `node = "mx1"`, `node = "mx2"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range [][2]string{{"alice@example.test", "pw-alice-long"}, {"bob@example.test", "pw-bob-long-one"}} {
		if code, _, stderr := pochta(t, u[1]+"\n", "user", "add", u[0], "--password-stdin", "--config", cfgs[0]); code != 0 {
			t.Fatalf("user add: exit %d: %s", code, stderr)
		}
	}
	for i := range cfgs {
		startDaemon(t, cfgs[i], filepath.Join(dirs[i], "data"))
	}
	a, _, err := config.Resolve(cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := config.Resolve(cfgs[1])
	if err != nil {
		t.Fatal(err)
	}

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
