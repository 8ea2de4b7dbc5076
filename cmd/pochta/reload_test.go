package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pochta/pochta/config"
)

func TestRestartNeededNamesOnlyWhatReloadCannotApply(t *testing.T) {
	old := config.Defaults()
	next := config.Defaults()
	next.Log.Level = "debug"
	next.EmailLimit.UserLimit = 5
	next.MessageServer.MessageLifetime = config.Duration{Duration: time.Hour}
	next.Alerts.Admins = []string{"ops@example.com"}
	if got := restartNeeded(old, next); len(got) != 0 {
		t.Fatalf("live settings reported as needing a restart: %v", got)
	}
	next.SMTP.Submission = "0.0.0.0:2587"
	next.Domains = []string{"example.org"}
	got := restartNeeded(old, next)
	if !slices.Contains(got, "[smtp]") || !slices.Contains(got, "domains") || len(got) != 2 {
		t.Fatalf("restart needed for %v, want [smtp] and domains", got)
	}
}

func TestReloadLineSaysWhatChanged(t *testing.T) {
	old := config.Defaults()
	next := config.Defaults()
	next.EmailLimit.UserLimit = 10
	next.Log.Level = "debug"
	next.MessageServer.MessageLifetime = config.Duration{Duration: 48 * time.Hour}
	next.Alerts.Admins = []string{"ops@example.com", "pm@example.com"}
	next.EmailQueue.RelayPassword = "hunter2-secret"
	got := describeChanges(configChanges(old, next))
	want := "message_server.message_lifetime 7d→2d, email_queue.relay_password changed, email_limit.user_limit 2000→10, " +
		"alerts.admins [postmaster@example.com]→[ops@example.com, pm@example.com], log.level info→debug"
	if got != want {
		t.Fatalf("reload line\n got %q\nwant %q", got, want)
	}
	if got := describeChanges(configChanges(old, config.Defaults())); got != "nothing changed" {
		t.Fatalf("no change: %q", got)
	}
}

func TestReloadRefusalNamesTheFirstError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pochta.toml")
	if err := os.WriteFile(path, []byte("[smtp]\nmax_recipients = 0\n[log]\nlevel = \"loud\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil {
		t.Fatal("bad file loaded")
	}
	got := firstError(err)
	want := path + ":2: [smtp] max_recipients: must be at least 1 (and 1 more: pochta config check lists them)"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
