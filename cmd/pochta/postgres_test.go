package main

import (
	"bufio"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if builtBinaryDir != "" {
		os.RemoveAll(builtBinaryDir)
	}
	os.Exit(code)
}

// withDatabase appends [message_server] database = url to the config.
func withDatabase(t *testing.T, cfgPath, url string) { withNode(t, cfgPath, url, "mx1") }

// withNode appends [message_server] database = url and node = name to the
// config.
func withNode(t *testing.T, cfgPath, url, name string) {
	t.Helper()
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text = fmt.Appendf(text, "\n[message_server]\ndatabase = %q\nnode = %q\n", url, name)
	if err := os.WriteFile(cfgPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
}

// [message_server] database = "postgres://…" (issue 13): the admin
// commands without a daemon and `pochta serve` work on the PostgreSQL
// database (a throwaway cluster, internal/pgtest): what one wrote the other
// reads, mail submitted over SMTP is read over IMAP, backup refuses in one
// sentence, no bbolt file is created, and the URL's password never shows.
func TestPostgresDatabaseServesAndAdministers(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	// The test cluster trusts loopback connections, so any password
	// works; it is there to be hidden.
	url := strings.Replace(pgtest.New(t), "postgres@", "postgres:s3cret@", 1)
	withDatabase(t, cfg, url)

	if code, _, stderr := pochta(t, "pw-alice-long\n", "user", "add", "alice@example.test", "--password-stdin", "--admin", "--config", cfg); code != 0 {
		t.Fatalf("user add without daemon: exit %d: %s", code, stderr)
	}
	code, withoutDaemon, stderr := pochta(t, "", "user", "list", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(withoutDaemon, `"address": "alice@example.test"`) {
		t.Fatalf("user list without daemon: exit %d, stdout %q, stderr %q", code, withoutDaemon, stderr)
	}

	startDaemon(t, cfg, filepath.Join(dir, "data"))
	code, withDaemon, stderr := pochta(t, "", "user", "list", "--json", "--config", cfg)
	if code != 0 || withDaemon != withoutDaemon {
		t.Fatalf("user list with daemon: exit %d, stderr %q\nwith daemon:\n%s\nwithout:\n%s", code, stderr, withDaemon, withoutDaemon)
	}
	if code, _, stderr := pochta(t, "pw-bob-long-one\n", "user", "add", "bob@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add with daemon: exit %d: %s", code, stderr)
	}
	// Mail flows: alice submits to bob over SMTP, and bob's INBOX has it
	// over IMAP.
	c, _, err := config.Resolve(cfg)
	if err != nil {
		t.Fatal(err)
	}
	submitMail(t, c.SMTP.Submission, "alice@example.test", "pw-alice-long", "bob@example.test", "over postgres")
	if n := imapExists(t, c.IMAP.Listen, "bob@example.test", "pw-bob-long-one"); n != 1 {
		t.Fatalf("bob's INBOX has %d messages, want the one alice sent", n)
	}
	code, stdout, stderr := pochta(t, "", "status", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "127.0.0.1") || strings.Contains(stdout+stderr, "s3cret") {
		t.Fatalf("status: exit %d, stdout %q, stderr %q: want the database server without its password", code, stdout, stderr)
	}
	code, _, stderr = pochta(t, "", "backup", filepath.Join(dir, "backups"), "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "pg_dump") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("backup of a PostgreSQL database: exit %d, stderr %q; want 1 and one sentence naming pg_dump", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "pochta.db")); !os.IsNotExist(err) {
		t.Errorf("a bbolt file was created next to a PostgreSQL database (stat: %v)", err)
	}
}

// A PostgreSQL server that cannot be reached stops every command that
// opens the database with exit 1 and one sentence naming the server,
// without the URL's password.
func TestPostgresUnreachableIsOneSentence(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	port := strings.TrimPrefix(freePorts(t, 1)[0], "127.0.0.1:")
	withDatabase(t, cfg, "postgres://pochta:s3cret@127.0.0.1:"+port+"/mail?connect_timeout=5")
	if code, stdout, stderr := pochta(t, "", "config", "check", "--config", cfg); code != 0 || !strings.Contains(stdout, "OK") {
		t.Fatalf("config check: exit %d, stdout %q, stderr %q; a postgres:// database is valid configuration", code, stdout, stderr)
	}
	for _, args := range [][]string{
		{"serve"},
		{"user", "add", "alice@example.test", "--password-stdin"},
		{"user", "list"},
		{"status"},
	} {
		code, _, stderr := pochta(t, "secret-password\n", append(args, "--config", cfg)...)
		msg := strings.TrimSpace(stderr)
		if code != 1 || !strings.Contains(msg, "127.0.0.1:"+port) || strings.Count(msg, "\n") != 0 || strings.Contains(msg, "s3cret") {
			t.Errorf("pochta %v: exit %d, stderr %q; want 1 and one line naming the server without the password", args, code, stderr)
		}
	}
}

// plainAuth is SMTP AUTH PLAIN without net/smtp's refusal of a cleartext
// connection to anything but "localhost" (the test daemon allows it on
// loopback).
type plainAuth struct{ user, password string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.password), nil
}

func (a plainAuth) Next([]byte, bool) ([]byte, error) { return nil, nil }

// submitMail sends one message through the submission port.
func submitMail(t *testing.T, addr, user, password, to, subject string) {
	t.Helper()
	msg := "From: " + user + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.test>\r\n\r\nHello.\r\n"
	if err := sendMail(addr, [2]string{user, password}, to, []byte(msg)); err != nil {
		t.Fatalf("submit to %s: %v", to, err)
	}
}

// imapExists logs in over IMAP and returns the EXISTS count of INBOX.
func imapExists(t *testing.T, addr, user, password string) int {
	t.Helper()
	conn, r := imapDial(t, addr)
	defer conn.Close()
	exists := -1
	for i, cmd := range []string{"LOGIN " + user + " " + password, "SELECT INBOX", "LOGOUT"} {
		tag := fmt.Sprintf("a%d", i)
		if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, cmd); err != nil {
			t.Fatal(err)
		}
		for {
			line, err := r.ReadLine()
			if err != nil {
				t.Fatalf("IMAP %s: %v", cmd, err)
			}
			var n int
			if _, err := fmt.Sscanf(line, "* %d EXISTS", &n); err == nil {
				exists = n
			}
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("IMAP %s: %s", cmd, line)
				}
				break
			}
		}
	}
	return exists
}

// imapDial connects to an IMAP port and reads the greeting; the connection
// has a 10-second deadline.
func imapDial(t *testing.T, addr string) (net.Conn, *textproto.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := textproto.NewReader(bufio.NewReader(conn))
	if _, err := r.ReadLine(); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn, r
}

// postgresNodeConfigs writes two daemons' configurations on the database
// at url: node "mx1" and node "mx2", each with its own ports and data
// directory (dirs), and a spare loopback address each (spare) for a
// listener a test adds.
func postgresNodeConfigs(t *testing.T, url string) (cfgs, dirs, spare [2]string) {
	t.Helper()
	for i := range cfgs {
		dirs[i] = t.TempDir()
		var extra []string
		cfgs[i], extra = writeConfigAndPorts(t, dirs[i], 1)
		spare[i] = extra[0]
		withDatabase(t, cfgs[i], url)
	}
	text, err := os.ReadFile(cfgs[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgs[1], []byte(strings.Replace(string(text), `node = "mx1"`, `node = "mx2"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgs, dirs, spare
}
