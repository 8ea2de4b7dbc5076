package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/config"
)

// The mistakes a new user makes first get one sentence each, the same with
// and without a daemon.
func TestUserCommandsExplainMistakesInOneSentence(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	check := func(label string) {
		t.Helper()
		if code, _, stderr := pochta(t, "bob-password\n", "user", "add", "bob@example.test", "--password-stdin", "--config", cfg); code != 0 {
			t.Fatalf("%s: user add: exit %d: %s", label, code, stderr)
		}
		for _, tt := range []struct {
			stdin string
			args  []string
			want  string
		}{
			{"another-password\n", []string{"user", "add", "bob@example.test"}, "pochta: user bob@example.test already exists\n"},
			{"another-password\n", []string{"user", "add", "Bob@Example.test"}, "pochta: user bob@example.test already exists\n"},
			{"carol-password\n", []string{"user", "add", "carol"}, "pochta: the address \"carol\" needs a domain: users are full addresses such as carol@example.test\n"},
			{"a\n", []string{"user", "add", "dave@example.test"}, "pochta: the password is too short: it needs at least 8 characters (this one has 1)\n"},
			{"DAVE@example.test\n", []string{"user", "add", "dave@example.test"}, "pochta: the password must not be the address or its part before the @\n"},
			{"Dave1234\n", []string{"user", "add", "dave1234@example.test"}, "pochta: the password must not be the address or its part before the @\n"},
			{"short\n", []string{"user", "passwd", "bob@example.test"}, "pochta: the password is too short: it needs at least 8 characters (this one has 5)\n"},
			{"BOB\n", []string{"user", "passwd", "bob@example.test"}, "pochta: the password is too short: it needs at least 8 characters (this one has 3)\n"},
			{"bob@example.test\n", []string{"user", "passwd", "bob@example.test"}, "pochta: the password must not be the address or its part before the @\n"},
			{"long-enough\n", []string{"user", "passwd", "nobody@example.test"}, "pochta: user nobody@example.test does not exist\n"},
			{"", []string{"user", "del", "nobody@example.test"}, "pochta: user nobody@example.test does not exist\n"},
			{"", []string{"sent", "status", "nobody@example.test"}, "pochta: user nobody@example.test does not exist\n"},
			{"", []string{"queue", "show", "42"}, "pochta: there is no queue entry 42\n"},
			{"", []string{"queue", "delete", "42", "43"}, "pochta: there is no queue entry 42\npochta: there is no queue entry 43\n"},
		} {
			args := append(tt.args, "--config", cfg)
			if tt.stdin != "" {
				args = append(args, "--password-stdin")
			}
			code, _, stderr := pochta(t, tt.stdin, args...)
			if code != exitError || stderr != tt.want {
				t.Errorf("%s: pochta %v: exit %d, stderr %q; want exit 1, %q", label, tt.args, code, stderr, tt.want)
			}
		}
		// The refused passwords changed nothing.
		if code, _, stderr := pochta(t, "", "user", "del", "bob@example.test", "--config", cfg); code != 0 {
			t.Fatalf("%s: user del: exit %d: %s", label, code, stderr)
		}
	}
	check("without daemon")
	startDaemon(t, cfg, filepath.Join(dir, "data"))
	check("with daemon")
}

func TestGroupWithoutSubcommandListsItsSubcommands(t *testing.T) {
	for group, want := range map[string][]string{
		"user":   {"user add", "user passwd", "user del", "user list", "user settings"},
		"queue":  {"queue list", "queue show", "queue resend", "queue delete"},
		"sent":   {"sent status"},
		"config": {"config check", "config import"},
	} {
		code, stdout, stderr := pochta(t, "", group, "--config", "/nonexistent.toml")
		if code != exitUsage || stdout != "" {
			t.Errorf("pochta %s: exit %d, stdout %q; want exit 2 and the list on stderr", group, code, stdout)
		}
		if strings.Contains(stderr, "unknown command") {
			t.Errorf("pochta %s: %q", group, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stderr, "  "+w+" ") {
				t.Errorf("pochta %s: the list lacks %q:\n%s", group, w, stderr)
			}
		}
		if code, stdout, _ := pochta(t, "", group, "--help"); code != exitOK || !strings.Contains(stdout, want[0]) {
			t.Errorf("pochta %s --help: exit %d, stdout %q", group, code, stdout)
		}
	}
	code, _, stderr := pochta(t, "", "user", "frobnicate")
	if code != exitUsage || !strings.Contains(stderr, `unknown command "user frobnicate"`) || !strings.Contains(stderr, "user add") {
		t.Errorf("pochta user frobnicate: exit %d, stderr %q", code, stderr)
	}
}

func TestQueueListOnAnEmptyQueueSaysSo(t *testing.T) {
	cfg := writeConfig(t, t.TempDir())
	if code, _, stderr := pochta(t, "alice-password\n", "user", "add", "alice@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add: %s", stderr)
	}
	if code, stdout, stderr := pochta(t, "", "queue", "list", "--config", cfg); code != 0 || stdout != "the queue is empty\n" {
		t.Errorf("queue list: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, stdout, _ := pochta(t, "", "queue", "list", "--json", "--config", cfg); code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("queue list --json: exit %d, stdout %q", code, stdout)
	}
	if code, stdout, _ := pochta(t, "", "queue", "list", "--status", "held", "--config", cfg); code != 0 || stdout != "the queue has no such entries\n" {
		t.Errorf("queue list --status held: exit %d, stdout %q", code, stdout)
	}
}

// userDel runs `user del` as if stdin were a terminal.
func userDel(t *testing.T, cfg, answer string, extra ...string) (prompt string, err error) {
	t.Helper()
	var errb bytes.Buffer
	e := &env{stdin: strings.NewReader(answer), stdout: &bytes.Buffer{}, stderr: &errb, terminal: true}
	e.o.config = cfg
	for _, f := range extra {
		if f == "--yes" {
			e.o.yes = true
		}
	}
	err = userDelCommand().run(context.Background(), e, []string{"bob@example.test"})
	return errb.String(), err
}

func TestUserDelAsksOnATerminal(t *testing.T) {
	cfg := writeConfig(t, t.TempDir())
	add := func() {
		if code, _, stderr := pochta(t, "bob-password\n", "user", "add", "bob@example.test", "--password-stdin", "--config", cfg); code != 0 {
			t.Fatalf("user add: %s", stderr)
		}
	}
	exists := func() bool {
		_, stdout, _ := pochta(t, "", "user", "list", "--json", "--config", cfg)
		return strings.Contains(stdout, "bob@example.test")
	}
	add()
	for _, answer := range []string{"\n", "n\n", "no\n", ""} {
		prompt, err := userDel(t, cfg, answer)
		if err == nil || err.Error() != "bob@example.test was not deleted" || !exists() {
			t.Fatalf("answer %q: err %v, user exists %v", answer, err, exists())
		}
		if prompt != "Delete bob@example.test and all their mail? [y/N] " {
			t.Fatalf("prompt %q", prompt)
		}
	}
	if _, err := userDel(t, cfg, "y\n"); err != nil || exists() {
		t.Fatalf("answer y: err %v, user exists %v", err, exists())
	}
	add()
	if prompt, err := userDel(t, cfg, "", "--yes"); err != nil || prompt != "" || exists() {
		t.Fatalf("--yes: err %v, prompt %q, user exists %v", err, prompt, exists())
	}
	// Not a terminal (scripts): no question.
	add()
	if code, _, stderr := pochta(t, "", "user", "del", "bob@example.test", "--config", cfg); code != 0 || stderr != "" || exists() {
		t.Fatalf("from a script: exit %d, stderr %q", code, stderr)
	}
}

func TestStatusShowsTheRelayState(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	// Only serve and user add create a database; status needs one.
	if code, _, stderr := pochta(t, "alice-password\n", "user", "add", "alice@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	code, stdout, _ := pochta(t, "", "status", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "relay:             smtp.example.net:587 unknown (no daemon is running to watch it)\n") {
		t.Fatalf("status without daemon: exit %d\n%s", code, stdout)
	}
	startDaemon(t, cfg, filepath.Join(dir, "data"))
	code, stdout, _ = pochta(t, "", "status", "--json", "--config", cfg)
	var s struct {
		Users int `json:"users"`
		Relay struct {
			Address string     `json:"address"`
			State   string     `json:"state"`
			Since   *time.Time `json:"since"`
		} `json:"relay"`
	}
	if err := json.Unmarshal([]byte(stdout), &s); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, stdout)
	}
	// Nothing has been sent: the daemon has not seen the relay answer, so
	// it does not claim it is up (a newcomer read "up" while nothing
	// listened there).
	if s.Relay.Address != "smtp.example.net:587" || s.Relay.State != "untried" || s.Relay.Since == nil || time.Since(*s.Relay.Since) > time.Minute {
		t.Fatalf("relay %+v, want smtp.example.net:587 untried since the daemon started", s.Relay)
	}
	code, stdout, _ = pochta(t, "", "status", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "relay:             smtp.example.net:587 not tried yet") {
		t.Fatalf("status with daemon: exit %d\n%s", code, stdout)
	}
}

func TestStatusWithoutQueueSaysRelayNotConfigured(t *testing.T) {
	c := config.Defaults()
	c.EmailQueue.Enabled = false
	if got := relayWithoutDaemon(c); got.State != "not configured" {
		t.Fatalf("queue disabled: %+v", got)
	}
	if got := describeRelay(relayState(c, nil)); !strings.Contains(got, "not configured") {
		t.Fatalf("daemon without queue: %q", got)
	}
}

func TestDevelopmentBannerMakesTheAdminTheFirstStep(t *testing.T) {
	var b bytes.Buffer
	printDevelopmentHint(&b, config.Development())
	banner := b.String()
	admin := strings.Index(banner, "./bin/pochta user add postmaster@example.com --admin")
	user := strings.Index(banner, "./bin/pochta user add alice@example.com")
	if admin < 0 || user < admin {
		t.Fatalf("the banner does not put creating the admin first:\n%s", banner)
	}
	if !strings.Contains(banner, "development relay 127.0.0.1:2526") {
		t.Fatalf("the banner does not mention the development relay:\n%s", banner)
	}
}

// Most tools take a global flag before the command; pochta did not, and
// answered `unknown command "--config FILE status"`.
func TestConfigBeforeTheCommandWorks(t *testing.T) {
	cfg := writeConfig(t, t.TempDir())
	if code, _, stderr := pochta(t, "alice-password\n", "--config", cfg, "user", "add", "alice@example.test", "--password-stdin"); code != 0 {
		t.Fatalf("pochta --config FILE user add: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"--config", cfg, "user", "list"}, {"--config=" + cfg, "user", "list"}, {"-config", cfg, "user", "list"}} {
		code, stdout, stderr := pochta(t, "", args...)
		if code != exitOK || !strings.Contains(stdout, "alice@example.test") {
			t.Errorf("pochta %v: exit %d, stdout %q, stderr %q; want the user list", args, code, stdout, stderr)
		}
	}
	if code, _, stderr := pochta(t, "", "--config", cfg); code != exitUsage || strings.Contains(stderr, "unknown command") {
		t.Errorf("pochta --config FILE alone: exit %d, stderr %q; want the overview (exit 2)", code, stderr)
	}
}
