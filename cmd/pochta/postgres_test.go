package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A postgres:// database is a valid configuration (SPEC.md), but this build
// has no PostgreSQL backend: every command that would open the database
// says so in one sentence, without the URL's password, and creates no file
// named after the URL.
func TestPostgresDatabaseIsRefusedClearly(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir)
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text = append(text, []byte(`
[message_server]
database = "postgres://pochta:s3cret@db.example.org:5432/mail"
node = "mx1"
`)...)
	if err := os.WriteFile(cfgPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := pochta(t, "", "config", "check", "--config", cfgPath); code != 0 || !strings.Contains(stdout, "OK") {
		t.Fatalf("config check: exit %d, stdout %q, stderr %q; a postgres:// database is valid configuration", code, stdout, stderr)
	}
	for _, args := range [][]string{
		{"serve"},
		{"user", "add", "alice@example.test", "--password-stdin"},
		{"user", "list"},
		{"status"},
	} {
		code, _, stderr := pochta(t, "secret-password\n", append(args, "--config", cfgPath)...)
		msg := strings.TrimSpace(stderr)
		if code != 1 {
			t.Errorf("pochta %v: exit %d, want 1 (stderr %q)", args, code, stderr)
		}
		if !strings.Contains(msg, "the PostgreSQL backend is not available in this build") || !strings.Contains(msg, "db.example.org") {
			t.Errorf("pochta %v: stderr %q does not say the PostgreSQL backend is unavailable", args, stderr)
		}
		if strings.Count(msg, "\n") != 0 {
			t.Errorf("pochta %v: stderr %q is more than one line", args, stderr)
		}
		if strings.Contains(stderr, "s3cret") {
			t.Errorf("pochta %v: stderr %q shows the database password", args, stderr)
		}
	}
	// Nothing was created for the URL: no data directory, no file.
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(filepath.Join(dir, "data"))
		t.Errorf("data directory exists after refusing (err %v, entries %v)", err, entries)
	}
}
