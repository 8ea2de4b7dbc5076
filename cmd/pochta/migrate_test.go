package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/pgstore"
)

// `pochta migrate --to URL` copies the bbolt database into an empty
// PostgreSQL one: it prints a count per mailbox that matches, the copy
// answers the same (UIDVALIDITY, UIDNEXT, UIDs, flags, modseqs, the
// password), the bbolt file is unchanged, and a second run refuses the
// now non-empty destination.
func TestMigrateToPostgres(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir)
	if code, _, stderr := pochta(t, "pw-alice-long\n", "user", "add", "alice@example.test", "--password-stdin", "--config", cfgPath); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	src, err := boltstore.Open(cfg.DatabasePath(), boltstore.Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, flags := range [][]imap.Flag{{imap.FlagSeen}, {imap.FlagFlagged}, nil} {
		raw := "From: a@example.test\r\nSubject: m" + string(rune('0'+i)) + "\r\n\r\nhello\r\n"
		if _, err := src.Append(ctx, "alice@example.test", "INBOX", &storage.NewMessage{Raw: []byte(raw), Flags: flags}); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.CreateMailbox(ctx, "alice@example.test", "Archive"); err != nil {
		t.Fatal(err)
	}
	if err := src.DeleteMailbox(ctx, "alice@example.test", "Archive"); err != nil {
		t.Fatal(err)
	}
	if err := src.CreateMailbox(ctx, "alice@example.test", "Archive"); err != nil {
		t.Fatal(err)
	}
	want, err := src.MailboxStatus(ctx, "alice@example.test", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	wantArchive, err := src.MailboxStatus(ctx, "alice@example.test", "Archive")
	if err != nil {
		t.Fatal(err)
	}
	wantMsgs, err := src.Messages(ctx, "alice@example.test", want.ID, []imap.UID{1, 2, 3}, storage.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(cfg.DatabasePath())
	if err != nil {
		t.Fatal(err)
	}

	url := pgtest.New(t)
	code, stdout, stderr := pochta(t, "", "migrate", "--to", url, "--config", cfgPath)
	if code != 0 {
		t.Fatalf("migrate: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "alice@example.test/INBOX: 3 messages, copied 3") || !strings.Contains(stdout, "counts match") {
		t.Errorf("migrate's report does not show the matching counts:\n%s", stdout)
	}
	after, err := os.ReadFile(cfg.DatabasePath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("migrate changed the bbolt file")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(cfg.DatabasePath()), ".migrate-*")); len(left) > 0 {
		t.Errorf("migrate left its snapshot behind: %q", left)
	}

	dst, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, err := dst.MailboxStatus(ctx, "alice@example.test", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	got.ID, want.ID = 0, 0
	if *got != *want {
		t.Errorf("INBOX on PostgreSQL %+v, on bbolt %+v", *got, *want)
	}
	st, err := dst.MailboxStatus(ctx, "alice@example.test", "Archive")
	if err != nil {
		t.Fatal(err)
	}
	st.ID, wantArchive.ID = 0, 0
	if *st != *wantArchive {
		t.Errorf("re-created Archive on PostgreSQL %+v, on bbolt %+v", *st, *wantArchive)
	}
	box, _ := dst.MailboxStatus(ctx, "alice@example.test", "INBOX")
	msgs, err := dst.Messages(ctx, "alice@example.test", box.ID, []imap.UID{1, 2, 3}, storage.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(wantMsgs) {
		t.Fatalf("%d messages on PostgreSQL, %d on bbolt", len(msgs), len(wantMsgs))
	}
	for i := range msgs {
		g, w := msgs[i], wantMsgs[i]
		if g.UID != w.UID || g.ModSeq != w.ModSeq || !g.InternalDate.Equal(w.InternalDate.Truncate(time.Microsecond)) || len(g.Flags) != len(w.Flags) {
			t.Errorf("message %d on PostgreSQL %+v, on bbolt %+v", w.UID, *g, *w)
		}
	}
	if _, err := dst.Authenticate(ctx, "alice@example.test", "pw-alice-long"); err != nil {
		t.Errorf("the password does not authenticate on PostgreSQL: %v", err)
	}

	code, _, stderr = pochta(t, "", "migrate", "--to", url, "--config", cfgPath)
	if code != 1 || !strings.Contains(stderr, "empty database") {
		t.Errorf("second migrate into the non-empty database: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := pochta(t, "", "migrate", "--config", cfgPath); code != 2 {
		t.Errorf("migrate without --to: exit %d, want 2", code)
	}

	// With the daemon running, migrate refuses before touching anything.
	startDaemon(t, cfgPath, filepath.Join(dir, "data"))
	code, _, stderr = pochta(t, "", "migrate", "--to", pgtest.New(t), "--config", cfgPath)
	if code != 1 || !strings.Contains(stderr, "stop it before migrating") {
		t.Errorf("migrate with the daemon running: exit %d, stderr %q", code, stderr)
	}
}
