package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
)

// imapLogin tries an IMAP LOGIN and returns the tagged answer.
func imapLogin(t *testing.T, addr, user, password string) string {
	t.Helper()
	conn, r := imapDial(t, addr)
	defer conn.Close()
	fmt.Fprintf(conn, "a LOGIN %s %s\r\n", user, password)
	for {
		line, err := r.ReadLine()
		if err != nil {
			t.Fatalf("IMAP LOGIN: %v", err)
		}
		if strings.HasPrefix(line, "a ") {
			fmt.Fprintf(conn, "b LOGOUT\r\n")
			return line
		}
	}
}

// A password changed with `pochta user passwd` on node A is refused on
// node B at once, though B had the old one in its login cache; a user
// deleted on A can no longer log in on B, and B's open session of that
// user ends.
func TestPostgresPasswordChangeOnOneNodeHoldsOnTheOther(t *testing.T) {
	url := pgtest.New(t)
	cfgs, dirs, _ := postgresNodeConfigs(t, url)
	const alice, old, renewed = "alice@example.test", "pw-alice-long", "pw-alice-renewed"
	if code, _, stderr := pochta(t, old+"\n", "user", "add", alice, "--password-stdin", "--config", cfgs[0]); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	for i := range cfgs {
		startDaemon(t, cfgs[i], filepath.Join(dirs[i], "data"))
	}
	b, _, err := config.Resolve(cfgs[1])
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second answered from B's login cache
		if got := imapLogin(t, b.IMAP.Listen, alice, old); !strings.HasPrefix(got, "a OK") {
			t.Fatalf("login on B before the change: %s", got)
		}
	}
	if code, _, stderr := pochta(t, renewed+"\n", "user", "passwd", alice, "--password-stdin", "--config", cfgs[0]); code != 0 {
		t.Fatalf("user passwd on A: exit %d: %s", code, stderr)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := imapLogin(t, b.IMAP.Listen, alice, old)
		if strings.HasPrefix(got, "a NO") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B still accepts the old password 2 s after the change on A: %s", got)
		}
	}
	if got := imapLogin(t, b.IMAP.Listen, alice, renewed); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("the new password on B: %s", got)
	}

	// An open session on B, then alice is deleted through A.
	conn, r := imapDial(t, b.IMAP.Listen)
	defer conn.Close()
	fmt.Fprintf(conn, "a LOGIN %s %s\r\n", alice, renewed)
	if line, err := r.ReadLine(); err != nil || !strings.HasPrefix(line, "a OK") {
		t.Fatalf("session login on B: %q %v", line, err)
	}
	if code, _, stderr := pochta(t, "", "user", "del", alice, "--yes", "--config", cfgs[0]); code != 0 {
		t.Fatalf("user delete on A: exit %d: %s", code, stderr)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := r.ReadLine()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the deleted user's session on B is still open 10 s after the delete on A")
		}
		if err != nil || strings.HasPrefix(line, "* BYE") {
			break // told, or closed
		}
	}
	if got := imapLogin(t, b.IMAP.Listen, alice, renewed); !strings.HasPrefix(got, "a NO") {
		t.Fatalf("the deleted user logs in on B: %s", got)
	}
}
