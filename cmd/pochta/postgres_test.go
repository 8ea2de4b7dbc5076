package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pochta/pochta/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// withDatabase appends [message_server] database = url to the config.
func withDatabase(t *testing.T, cfgPath, url string) {
	t.Helper()
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text = append(text, []byte("\n[message_server]\ndatabase = \""+url+"\"\nnode = \"mx1\"\n")...)
	if err := os.WriteFile(cfgPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
}

// [message_server] database = "postgres://…" (issue 13): the admin
// commands without a daemon and `pochta serve` work on the PostgreSQL
// database (a throwaway cluster, internal/pgtest), which keeps what they
// wrote across a restart; no bbolt file is created, and the URL's password
// never shows.
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
