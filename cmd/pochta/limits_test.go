package main

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pochta/pochta/config"
)

func TestMakePrivateNarrowsADatabaseOthersCanRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pochta.db")
	if err := os.WriteFile(path, []byte("db"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	if err := makePrivate(logger, path); err != nil {
		t.Fatalf("makePrivate: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "readable by others") {
		t.Errorf("no warning logged: %q", logs.String())
	}
	logs.Reset()
	if err := makePrivate(logger, path); err != nil || logs.Len() != 0 {
		t.Errorf("second call: %v, log %q; want nothing to do", err, logs.String())
	}
	if err := makePrivate(logger, path+".missing"); err == nil {
		t.Error("makePrivate on a missing file succeeded")
	}
}

func TestSharedLimitsFollowTheConfig(t *testing.T) {
	cfg := config.Defaults()
	cfg.Limits.MaxConnectionsPerAddress = 2
	cfg.Limits.CommandsPerSecond = 7
	l := newSharedLimits(cfg.Limits)
	client := netip.MustParseAddr("192.0.2.1")
	for i := range 2 {
		if release, _ := l.connections.Open(client); release == nil {
			t.Fatalf("connection %d refused under max_connections_per_address", i+1)
		}
	}
	if release, why := l.connections.Open(client); release != nil || why == "" {
		t.Error("a connection over max_connections_per_address was admitted")
	}
	if l.commandRate.PerSecond != 7 {
		t.Errorf("command rate %v, want commands_per_second", l.commandRate.PerSecond)
	}
	if l.logins == nil || l.logins.BlockTime() != cfg.Limits.AuthBlockTime.Duration {
		t.Errorf("login throttle %+v, want auth_block_time", l.logins)
	}
}
