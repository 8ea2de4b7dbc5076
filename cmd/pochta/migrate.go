package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/pochta/pochta/control"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/pgstore"
)

// errMigrateMismatch is a copy whose counts differ from its source's.
var errMigrateMismatch = errors.New("the copy's counts differ from the source's")

func migrateCommand() *command {
	return &command{
		name: "migrate", args: "--to URL",
		summary: "copies the bbolt database into an empty PostgreSQL database (the daemon stopped), keeping UIDs, UIDVALIDITY, flags and modseqs; the source is left as it is",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.to, "to", "", "the destination: a postgres:// URL of an empty database")
		},
		run: runMigrate,
	}
}

func runMigrate(ctx context.Context, e *env, _ []string) error {
	if e.o.to == "" {
		return &usageError{msg: "--to URL is required"}
	}
	if !strings.HasPrefix(e.o.to, "postgres://") && !strings.HasPrefix(e.o.to, "postgresql://") {
		return &usageError{msg: "--to must be a postgres:// URL (copying from PostgreSQL back to bbolt is not available yet)"}
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL() != "" {
		return errors.New("the configured database is PostgreSQL; copying from PostgreSQL to bbolt is not available yet")
	}
	if _, err := control.Dial(cfg.SocketPath()); err == nil {
		return fmt.Errorf("the daemon is running (its control socket %s answers): stop it before migrating", cfg.SocketPath())
	} else if !errors.Is(err, control.ErrNoDaemon) {
		return err
	}
	snapshot, cleanup, err := snapshotBolt(cfg.DatabasePath())
	if err != nil {
		return err
	}
	defer cleanup()
	src, err := boltstore.Open(snapshot, boltstore.Options{Logger: slog.New(slog.DiscardHandler), MustExist: true})
	if err != nil {
		return fmt.Errorf("the snapshot of %s: %w", cfg.DatabasePath(), err)
	}
	defer src.Close()
	exp, ok := src.(storage.Exporter)
	if !ok {
		return errors.New("the bbolt store cannot be exported")
	}
	dst, err := pgstore.Open(ctx, e.o.to, pgstore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("--to: %s", strings.Join(strings.Fields(redactPassword(err.Error(), e.o.to)), " "))
	}
	defer dst.Close()
	imp, ok := dst.(storage.Importer)
	if !ok {
		return errors.New("the PostgreSQL store cannot import")
	}
	empty, err := imp.Empty(ctx)
	if err != nil {
		return err
	}
	if !empty {
		return errors.New("the destination database already has users: migrate copies only into an empty database")
	}
	want, err := storage.CountExport(ctx, exp)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "copying %d users, %d mailboxes from %s\n", want.Users, len(want.Mailboxes), cfg.DatabasePath())
	if err := imp.Import(ctx, progress{exp, e}); err != nil {
		return fmt.Errorf("%w (the destination holds a partial copy: empty it before trying again)", err)
	}
	got, err := countStore(ctx, dst)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(want.Mailboxes))
	for k := range want.Mailboxes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(e.stdout, "%s: %d messages, copied %d\n", k, want.Mailboxes[k], got.Mailboxes[k])
	}
	if m := want.Mismatches(got); len(m) > 0 {
		for _, line := range m {
			fmt.Fprintln(e.stderr, "mismatch: "+line)
		}
		return errMigrateMismatch
	}
	fmt.Fprintf(e.stdout, "done: %d users copied, counts match; %s is unchanged\n", got.Users, cfg.DatabasePath())
	return nil
}

// progress prints a line per user as the import walks the source.
type progress struct {
	storage.Exporter
	e *env
}

func (p progress) Export(ctx context.Context, v storage.ExportVisitor) error {
	user := v.User
	v.User = func(u *storage.ExportedUser) error {
		fmt.Fprintf(p.e.stdout, "user %s\n", u.Record.Address)
		return user(u)
	}
	return p.Exporter.Export(ctx, v)
}

// countStore counts the destination through its Store reads: users, and
// each mailbox's messages.
func countStore(ctx context.Context, s storage.Store) (*storage.Counts, error) {
	users, err := s.Users(ctx)
	if err != nil {
		return nil, err
	}
	c := &storage.Counts{Users: len(users), Mailboxes: map[string]int{}}
	for _, u := range users {
		boxes, err := s.Mailboxes(ctx, u.Address)
		if err != nil {
			return nil, err
		}
		for _, b := range boxes {
			uids, err := s.UIDs(ctx, u.Address, b.ID)
			if err != nil {
				return nil, err
			}
			c.Mailboxes[u.Address+"/"+b.Name] = len(uids)
		}
	}
	return c, nil
}

// redactPassword removes url's password from msg.
func redactPassword(msg, url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		rest := url[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				if pw := rest[colon+1 : at]; pw != "" {
					msg = strings.ReplaceAll(msg, pw, "xxxxx")
				}
			}
		}
	}
	return msg
}

// snapshotBolt copies the bbolt database at path, read-only, into a file
// next to it and returns that file's path: the copy is opened by the store
// (which writes at start), so the source is never written. The shared lock
// a read-only open takes fails while a daemon holds the database.
func snapshotBolt(path string) (snapshot string, cleanup func(), err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("no database at %s", path)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return "", nil, fmt.Errorf("the database %s is held by another process (a running daemon?): stop it before migrating", path)
	}
	if err != nil {
		return "", nil, fmt.Errorf("database %s: %w", path, err)
	}
	defer db.Close()
	f, err := os.CreateTemp(filepath.Dir(path), ".migrate-*.db")
	if err != nil {
		return "", nil, fmt.Errorf("snapshot of %s: %w", path, err)
	}
	name := f.Name()
	cleanup = func() { os.Remove(name) }
	err = db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("snapshot of %s: %w", path, err)
	}
	return name, cleanup, nil
}
