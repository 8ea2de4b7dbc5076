package main

import (
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
