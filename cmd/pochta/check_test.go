package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/boltstore/bolttest"
)

func TestAdminCommandsWithoutADatabaseSayWhereTheyLookedAndCreateNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	dbPath := filepath.Join(dir, "data", "pochta.db")
	for _, args := range [][]string{
		{"status"},
		{"user", "list"},
		{"user", "passwd", "alice@example.test", "--password-stdin"},
		{"queue", "list"},
		{"check"},
		{"backup", filepath.Join(dir, "backups")},
	} {
		code, _, stderr := pochta(t, "a-long-password\n", append(args, "--config", cfg)...)
		if code != exitError || !strings.Contains(stderr, "no database at "+dbPath) || !strings.Contains(stderr, "--config") {
			t.Errorf("pochta %v without a database: exit %d, stderr %q; want 1 naming %s and --config", args, code, stderr, dbPath)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("pochta %v created the data directory (%v)", args, err)
		}
	}
	if code, _, stderr := pochta(t, "a-long-password\n", "user", "add", "alice@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add (which may create the database): exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Fatalf("user add did not create the database: %v", err)
	}
}

// spoilParsed overwrites one message's envelope record with garbage.
func spoilParsed(t *testing.T, dbPath, user string, box uint64, uid uint32) {
	t.Helper()
	bolttest.SpoilParsed(t, dbPath, user, box, uid)
}

type checkJSON struct {
	Checked int `json:"checked"`
	Bad     []struct {
		User    string `json:"user"`
		Mailbox string `json:"mailbox"`
		UID     uint32 `json:"uid"`
		Error   string `json:"error"`
	} `json:"bad"`
}

func runCheck(t *testing.T, cfg string, args ...string) (int, checkJSON) {
	t.Helper()
	code, stdout, stderr := pochta(t, "", append([]string{"check", "--json", "--config", cfg}, args...)...)
	var rep checkJSON
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("check --json printed %q (stderr %q): %v", stdout, stderr, err)
	}
	return code, rep
}

func TestCheckFindsAndRepairsADamagedRecordWithAndWithoutTheDaemon(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	dbPath := filepath.Join(dir, "data", "pochta.db")
	if code, _, stderr := pochta(t, "a-long-password\n", "user", "add", "alice@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	store, err := boltstore.Open(dbPath, boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range []string{"one", "two", "three"} {
		if _, err := store.Append(ctx, "alice@example.test", "INBOX", &storage.NewMessage{Raw: []byte("Subject: " + s + "\r\n\r\n" + s + "\r\n")}); err != nil {
			t.Fatal(err)
		}
	}
	box, err := store.MailboxStatus(ctx, "alice@example.test", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	store.Close()

	if code, rep := runCheck(t, cfg); code != 0 || len(rep.Bad) != 0 || rep.Checked == 0 {
		t.Fatalf("check of a sound database: exit %d, %+v", code, rep)
	}
	spoilParsed(t, dbPath, "alice@example.test", box.ID, 2)

	// Without a daemon the CLI reads the file itself.
	code, rep := runCheck(t, cfg)
	if code != exitError || len(rep.Bad) != 1 || rep.Bad[0].User != "alice@example.test" || rep.Bad[0].Mailbox != "INBOX" || rep.Bad[0].UID != 2 || rep.Bad[0].Error == "" {
		t.Fatalf("check without daemon: exit %d, %+v; want 1 and alice's INBOX UID 2", code, rep)
	}

	// With the daemon running, through its control socket.
	startDaemon(t, cfg, filepath.Join(dir, "data"))
	if code, rep := runCheck(t, cfg); code != exitError || len(rep.Bad) != 1 {
		t.Fatalf("check through the daemon: exit %d, %+v", code, rep)
	}
	if code, rep := runCheck(t, cfg, "--repair"); code != 0 || len(rep.Bad) != 1 {
		t.Fatalf("check --repair: exit %d, %+v; want 0 after quarantining the one bad record", code, rep)
	}
	if code, rep := runCheck(t, cfg); code != 0 || len(rep.Bad) != 0 {
		t.Fatalf("check after repair: exit %d, %+v", code, rep)
	}
	code, stdout, _ := pochta(t, "", "status", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, `"messages": 2`) {
		t.Errorf("status after repair: exit %d, %s; want 2 messages", code, stdout)
	}
}

func TestBackupRemovesTheTemporaryFileOfAKilledBackupButNotOfARunningOne(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	if code, _, stderr := pochta(t, "a-long-password\n", "user", "add", "alice@example.test", "--password-stdin", "--config", cfg); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	backups := filepath.Join(dir, "backups")
	if err := os.MkdirAll(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	killed := filepath.Join(backups, ".pochta-backup-111")
	running := filepath.Join(backups, ".pochta-backup-222")
	for _, name := range []string{killed, running} {
		if err := os.WriteFile(name, []byte("half a database"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, old, old); err != nil {
			t.Fatal(err)
		}
	}
	// A backup still running holds the lock on its file.
	holder, err := os.Open(running)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := unix.Flock(int(holder.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := pochta(t, "", "backup", backups, "--config", cfg)
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(killed); !errors.Is(err, os.ErrNotExist) || !strings.Contains(stderr, killed) {
		t.Errorf("the killed backup's temporary file is still there (%v), stderr %q", err, stderr)
	}
	if _, err := os.Stat(running); err != nil {
		t.Errorf("the running backup's temporary file was removed: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(backups, "pochta-*.db"))
	if len(left) != 1 {
		t.Errorf("backups written: %v, want one", left)
	}
}

func TestDevelopmentBannerPrintsTheAbsoluteDataPath(t *testing.T) {
	var out strings.Builder
	printDevelopmentHint(&out, config.Development())
	abs, err := filepath.Abs("data")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "data in "+abs) {
		t.Errorf("banner:\n%s\nwant the data path %s", out.String(), abs)
	}
}

// A damaged database is one sentence on the terminal, naming the file and
// what to do, with no layer's prefix ("storage:", "queue:") and no error
// kind tacked on, for every command that opens it, serve included.
func TestADamagedDatabaseIsOneSentenceNamingTheFile(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	dbPath := filepath.Join(dir, "data", "pochta.db")
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", dbPath + " is an empty file, not a pochta database"},
		{"not bbolt", strings.Repeat("not a database ", 1000), dbPath + " is not a pochta database (not a bbolt file)"},
	} {
		if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dbPath, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"status"}, {"user", "list"}, {"check"}, {"serve"}} {
			code, _, stderr := pochta(t, "", append(args, "--config", cfg)...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if code != exitError || !strings.HasPrefix(last, "pochta: "+tc.want) ||
				strings.Contains(last, "storage:") || strings.Contains(last, "the database is damaged") {
				t.Errorf("%s database, pochta %v: exit %d, last line %q; want 1 and one sentence starting %q",
					tc.name, args, code, last, "pochta: "+tc.want)
			}
		}
		if fi, err := os.Stat(dbPath); err != nil || fi.Size() != int64(len(tc.content)) {
			t.Errorf("%s database: the file changed (%v, %v)", tc.name, fi, err)
		}
	}
}

// Pages bbolt cannot read are not messages --repair could move: check says
// to restore the backup, in one sentence, instead of suggesting --repair.
func TestCheckOnDamagedPagesAdvisesTheBackup(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir)
	for _, u := range []string{"alice", "bob", "carol"} {
		if code, _, stderr := pochta(t, "a-long-password\n", "user", "add", u+"@example.test", "--password-stdin", "--config", cfg); code != 0 {
			t.Fatalf("user add: %s", stderr)
		}
	}
	dbPath := filepath.Join(dir, "data", "pochta.db")
	f, err := os.OpenFile(dbPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte(strings.Repeat("\xa5\x5a\x13\x37", 50))
	for page := int64(2); page < 12; page++ {
		if _, err := f.WriteAt(garbage, page*4096+16); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	code, _, stderr := pochta(t, "", "check", "--config", cfg)
	want := "damaged pages, not single messages, which --repair cannot move: stop the daemon and restore the database from a backup"
	if code != exitError || !strings.Contains(stderr, want) || strings.Contains(stderr, "damaged records remain") {
		t.Errorf("check on damaged pages: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}
