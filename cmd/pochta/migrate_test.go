package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/internal/testrelay"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/pgstore"
	"github.com/pochta/pochta/storage/storagetest"
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

// The whole way there and back with the command: a realistic bbolt
// database (storagetest.FillForMove) goes into PostgreSQL and from there
// into a new bbolt file. `pochta sent status` and `pochta queue list`
// print the same on all three, the last file answers the Store API as the
// first, whose bytes are unchanged; a destination file that holds a
// database, or is no database at all, is refused in one sentence; and a
// daemon on the PostgreSQL copy relays the entry that was waiting (and
// the one whose lease the move cleared) exactly once.
func TestMigrateRoundTripThroughPostgres(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.DatabasePath()), 0o700); err != nil {
		t.Fatal(err)
	}
	first, err := boltstore.Open(cfg.DatabasePath(), boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	q := storagetest.FillForMove(t, first)
	want := storagetest.DescribeMoved(t, first)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	hash := func() [32]byte { return sha256File(t, cfg.DatabasePath()) }
	listings := func(cfg string) string {
		t.Helper()
		code, sent, stderr := pochta(t, "", "sent", "status", storagetest.MoveAlice, "--json", "--config", cfg)
		if code != 0 {
			t.Fatalf("sent status: exit %d: %s", code, stderr)
		}
		code, queue, stderr := pochta(t, "", "queue", "list", "--config", cfg)
		if code != 0 {
			t.Fatalf("queue list: exit %d: %s", code, stderr)
		}
		return sent + queue
	}
	wantListings := listings(cfgPath)
	before := hash()

	relay := testrelay.Start(t)
	pgDir := t.TempDir()
	pgCfg := writeConfig(t, pgDir)
	url := pgtest.New(t)
	withDatabase(t, pgCfg, url)
	appendConfig(t, pgCfg, "[email_queue]\nrelay = %q\nrelay_tls = \"none\"\n", relay.Addr)
	code, stdout, stderr := pochta(t, "", "migrate", "--to", url, "--config", cfgPath)
	if code != 0 {
		t.Fatalf("migrate into PostgreSQL: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	for _, line := range []string{"read tracking: 6 sent messages, copied 6", "queue outbox: 3 entries, copied 3", "queue held: 1 entries, copied 1",
		"queue sent: 1 entries, copied 1", "queue failed: 1 entries, copied 1", "counts match", "users sign in again"} {
		if !strings.Contains(stdout, line) {
			t.Errorf("migrate's report lacks %q:\n%s", line, stdout)
		}
	}
	if hash() != before {
		t.Error("migrate changed the bbolt file")
	}
	if got := listings(pgCfg); got != wantListings {
		t.Errorf("on PostgreSQL, sent status and queue list print\n%s\non bbolt\n%s", got, wantListings)
	}

	// And back, into a new file.
	back := filepath.Join(t.TempDir(), "back.db")
	code, stdout, stderr = pochta(t, "", "migrate", "--to", back, "--config", pgCfg)
	if code != 0 || !strings.Contains(stdout, "counts match") {
		t.Fatalf("migrate into bbolt: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(back), ".migrate-*")); len(left) > 0 {
		t.Errorf("migrate left its unfinished file behind: %q", left)
	}
	backCfg := writeConfig(t, t.TempDir())
	appendConfig(t, backCfg, "[message_server]\ndatabase = %q\n", back)
	if got := listings(backCfg); got != wantListings {
		t.Errorf("on the bbolt copy, sent status and queue list print\n%s\non the first\n%s", got, wantListings)
	}
	copied, err := boltstore.Open(back, boltstore.Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := storagetest.DescribeMoved(t, copied); got != want {
		t.Errorf("the bbolt file copied back answers differently from the first:\n%s\nfirst:\n%s", got, want)
	}
	if err := copied.Close(); err != nil {
		t.Fatal(err)
	}

	// The copy is not overwritten, nor is a file that is no database.
	backHash := sha256File(t, back)
	code, _, stderr = pochta(t, "", "migrate", "--to", back, "--config", pgCfg)
	if code != 1 || !strings.Contains(stderr, back+" already holds a database") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("migrate into the copy again: exit %d, stderr %q; want 1 and one sentence", code, stderr)
	}
	if sha256File(t, back) != backHash {
		t.Error("the refused migrate changed the existing file")
	}
	junk := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(junk, []byte("not a database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = pochta(t, "", "migrate", "--to", junk, "--config", pgCfg)
	if code != 1 || !strings.Contains(stderr, "is not a bbolt database") {
		t.Errorf("migrate into a text file: exit %d, stderr %q", code, stderr)
	}
	if b, _ := os.ReadFile(junk); string(b) != "not a database\n" {
		t.Errorf("the refused migrate changed the text file: %q", b)
	}
	if code, _, stderr := pochta(t, "", "migrate", "--to", url, "--config", pgCfg); code != 2 || !strings.Contains(stderr, "bbolt file") {
		t.Errorf("migrate from PostgreSQL --to a URL: exit %d, stderr %q; want 2", code, stderr)
	}

	// The daemon on the PostgreSQL copy relays what was waiting.
	startDaemon(t, pgCfg, filepath.Join(pgDir, "data"))
	dst, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		w, err1 := dst.QueueEntry(ctx, q.Waiting)
		l, err2 := dst.QueueEntry(ctx, q.Leased)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if w.Status == storage.QueueSent && l.Status == storage.QueueSent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the move the waiting entry is %s and the formerly leased one %s, want both sent", w.Status, l.Status)
		}
		time.Sleep(50 * time.Millisecond) // polling the queue's outcome with a deadline
	}
	var rcpts []string
	for _, m := range relay.Accepted() {
		rcpts = append(rcpts, m.To...)
	}
	slices.Sort(rcpts)
	if !slices.Equal(rcpts, []string{"ext@remote.test", "x@remote.test", "y@remote.test"}) {
		t.Errorf("the relay got %q, want the waiting entry's x and y and the leased one's ext, once each", rcpts)
	}
	sent, err := dst.SentStatus(ctx, storagetest.MoveAlice)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sent {
		for _, r := range m.Recipients {
			if m.Subject == "minutes" && r.External && r.State != storage.TrackRelayed {
				t.Errorf("alice's Sent shows %s %s after the relay took it", r.Address, r.State)
			}
		}
	}
}

// appendConfig appends a TOML fragment to the config file.
func appendConfig(t *testing.T, path, format string, args ...any) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "\n"+format, args...); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// A copy into bbolt that fails leaves no file behind, neither at --to nor
// beside it: here the PostgreSQL source holds a queue entry that does not
// decode.
func TestMigrateToBoltFailingLeavesNoFile(t *testing.T) {
	ctx := context.Background()
	cfg := writeConfig(t, t.TempDir())
	url := pgtest.New(t)
	withDatabase(t, cfg, url)
	if code, _, stderr := pochta(t, "pw-alice-long\n", "user", "add", "alice@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO queue (source, entry) VALUES ('user', '"not an entry"')`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	back := filepath.Join(dir, "back.db")
	code, _, stderr := pochta(t, "", "migrate", "--to", back, "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "queue entry") {
		t.Fatalf("migrate from a database with a broken queue entry: exit %d, stderr %q; want 1 naming the entry", code, stderr)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the failed migrate left %v in the destination's directory", left)
	}
}
