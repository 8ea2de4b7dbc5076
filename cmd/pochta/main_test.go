package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pochta runs one command line in-process and returns its exit code and
// output.
func pochta(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"user", "list", "--no-such-flag"},
		{"user", "add"},
		{"user", "del", "a@example.com", "b@example.com"},
		{"no-such-command"},
		{"user", "settings", "a@example.com", "--poll-interval", "soon"},
	} {
		code, _, stderr := pochta(t, "", args...)
		if code != exitUsage {
			t.Errorf("pochta %v: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if !strings.Contains(stderr, "usage") && !strings.Contains(stderr, "commands:") {
			t.Errorf("pochta %v: stderr has no usage: %q", args, stderr)
		}
	}
}

func TestHelpPrintsUsageAndExitsZero(t *testing.T) {
	code, stdout, _ := pochta(t, "", "user", "add", "--help")
	if code != 0 || !strings.Contains(stdout, "usage: pochta user add ADDRESS") || !strings.Contains(stdout, "--password-stdin") {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
}

func TestParseInterleavedAcceptsFlagsAfterArguments(t *testing.T) {
	cmd, rest := findCommand([]string{"user", "add", "a@example.com", "--password-stdin", "--config", "x.toml", "--admin"})
	if cmd == nil || cmd.name != "user add" {
		t.Fatalf("command = %v", cmd)
	}
	var o opts
	fs := newFlagSet(cmd, &o)
	args, err := parseInterleaved(fs, rest)
	if err != nil {
		t.Fatal(err)
	}
	if len(args) != 1 || args[0] != "a@example.com" || !o.passwordStdin || !o.admin || o.config != "x.toml" {
		t.Fatalf("args %v opts %+v", args, o)
	}
	args, err = parseInterleaved(newFlagSet(cmd, &o), []string{"--", "--odd@example.com"})
	if err != nil || len(args) != 1 || args[0] != "--odd@example.com" {
		t.Fatalf("after --: args %v err %v", args, err)
	}
}

func TestVersionPrintsSomething(t *testing.T) {
	code, stdout, _ := pochta(t, "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "pochta ") {
		t.Fatalf("exit %d stdout %q", code, stdout)
	}
}

// freePorts returns n distinct free loopback addresses: it holds every
// listener until all n are chosen, so the kernel cannot hand out one port
// twice (two calls that each listen and close may get the same port, and a
// config with two listeners on one address is refused).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}

// writeConfig writes a config with free loopback ports into dir.
func writeConfig(t *testing.T, dir string) string {
	t.Helper()
	path, _ := writeConfigAndPorts(t, dir, 0)
	return path
}

// writeConfigAndPorts is writeConfig that also returns extra free loopback
// addresses, distinct from the config's, for listeners a test adds.
func writeConfigAndPorts(t *testing.T, dir string, extra int) (string, []string) {
	t.Helper()
	path := filepath.Join(dir, "pochta.toml")
	ports := freePorts(t, 5+extra)
	cfg := fmt.Sprintf(`hostname = "mail.example.test"
domains = ["example.test"]
data_dir = %q

[smtp]
submission = %q
submissions = %q
inbound = ""
allow_insecure_auth = true

[imap]
listen = %q
tls_listen = %q
allow_insecure_auth = true

[metrics]
listen = %q
`, filepath.Join(dir, "data"), ports[0], ports[1], ports[2], ports[3], ports[4])
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ports[5:]
}

// startDaemon runs `pochta serve` in-process until the test ends.
func startDaemon(t *testing.T, cfgPath, dataDir string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out bytes.Buffer
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &out}
		e.o.config = cfgPath
		cmd := serveCommand()
		if err := cmd.run(ctx, e, nil); err != nil {
			t.Logf("serve: %v", err)
			done <- 1
			return
		}
		done <- 0
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop within 30s")
		}
	})
	// The control socket is the last thing the daemon binds.
	sock := filepath.Join(dataDir, "pochta.sock")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case code := <-done:
			t.Fatalf("daemon exited with %d before listening: %s", code, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not open its control socket: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a socket, not waiting for an outcome
	}
}

func TestUserCommandsGiveTheSameOutputWithAndWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)

	// No daemon: the CLI opens the database itself.
	if code, _, stderr := pochta(t, "pw-alice\n", "user", "add", "alice@example.test", "--password-stdin", "--admin", "--config", cfg); code != 0 {
		t.Fatalf("user add without daemon: exit %d: %s", code, stderr)
	}
	_, withoutDaemon, _ := pochta(t, "", "user", "list", "--json", "--config", cfg)

	startDaemon(t, cfg, filepath.Join(dir, "data"))
	code, withDaemon, stderr := pochta(t, "", "user", "list", "--json", "--config", cfg)
	if code != 0 {
		t.Fatalf("user list with daemon: exit %d: %s", code, stderr)
	}
	if withDaemon != withoutDaemon || !strings.Contains(withDaemon, `"address": "alice@example.test"`) {
		t.Fatalf("with daemon:\n%s\nwithout:\n%s", withDaemon, withoutDaemon)
	}

	if code, _, stderr := pochta(t, "pw-bob-long\n", "user", "add", "bob@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add with daemon: exit %d: %s", code, stderr)
	}
	code, _, stderr = pochta(t, "x-long-password\n", "user", "add", "bob@example.test", "--password-stdin", "--config", cfg)
	if code != exitError || !strings.Contains(stderr, "bob@example.test") {
		t.Fatalf("duplicate user: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = pochta(t, "", "user", "del", "carol@example.test", "--config", cfg)
	if code != exitError || !strings.Contains(stderr, "carol@example.test") {
		t.Fatalf("deleting an unknown user: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ := pochta(t, "", "user", "settings", "bob@example.test", "--poll-interval", "2m", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, `"poll_interval": "2m"`) {
		t.Fatalf("settings: exit %d, %s", code, stdout)
	}
	code, stdout, _ = pochta(t, "", "status", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, `"users": 2`) || !strings.Contains(stdout, `"daemon_running": true`) {
		t.Fatalf("status: exit %d, %s", code, stdout)
	}
	backups := t.TempDir()
	code, stdout, stderr = pochta(t, "", "backup", backups, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, backups) {
		t.Fatalf("backup: exit %d, %s %s", code, stdout, stderr)
	}
}
