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

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/control"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/pgstore"
)

// errMigrateMismatch is a copy whose counts differ from its source's.
var errMigrateMismatch = errors.New("the copy's counts differ from the source's")

func migrateCommand() *command {
	return &command{
		name: "migrate", args: "--to DESTINATION",
		summary: "copies the database to the other backend, the daemon stopped: bbolt into an empty PostgreSQL database, or PostgreSQL into a new bbolt file",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.to, "to", "", "the destination: a postgres:// URL of an empty database (from bbolt), or the path of a new bbolt file (from PostgreSQL). "+
				"Kept: users with their passwords, subscriptions, mailboxes with UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, messages with UIDs, flags and modseqs, "+
				"read tracking, the queue with every entry's state and body (leases cleared), the day counters and alerts, the relay state. "+
				"Not kept: web sessions (users sign in again). The counts are compared; the source is left as it is")
		},
		run: runMigrate,
	}
}

// migration is one move: its two ends, opened, and how to name them.
type migration struct {
	src      storage.Store
	exp      storage.Exporter
	dst      storage.Store
	imp      storage.Importer
	from, to string
	// cleanup removes the snapshot or the unfinished bbolt file.
	cleanup func()
	// commit makes the destination the finished copy (a bbolt file is
	// written beside its final name and renamed there); nil when the
	// destination is written in place.
	commit func() error
}

func runMigrate(ctx context.Context, e *env, _ []string) error {
	if e.o.to == "" {
		return &usageError{msg: "--to is required: a postgres:// URL (from a bbolt database) or the path of a new bbolt file (from PostgreSQL)"}
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	toPostgres := config.IsPostgresURL(e.o.to)
	switch {
	case cfg.DatabaseURL() == "" && !toPostgres:
		return &usageError{msg: "--to must be a postgres:// URL: the configured database is a bbolt file, and migrate copies it into PostgreSQL"}
	case cfg.DatabaseURL() != "" && toPostgres:
		return &usageError{msg: "--to must be the path of a bbolt file: the configured database is PostgreSQL, and migrate copies it into a new bbolt file"}
	}
	if _, err := control.Dial(cfg.SocketPath()); err == nil {
		return fmt.Errorf("the daemon is running (its control socket %s answers): stop it before migrating", cfg.SocketPath())
	} else if !errors.Is(err, control.ErrNoDaemon) {
		return err
	}
	var m *migration
	if toPostgres {
		m, err = openBoltToPostgres(ctx, cfg.DatabasePath(), e.o.to)
	} else {
		m, err = openPostgresToBolt(ctx, cfg.DatabaseURL(), e.o.to)
	}
	if err != nil {
		return err
	}
	defer m.close()
	return m.run(ctx, e)
}

// openBoltToPostgres opens a snapshot of the bbolt database at path and the
// empty PostgreSQL database at url.
func openBoltToPostgres(ctx context.Context, path, url string) (_ *migration, err error) {
	m := &migration{from: path, to: "the PostgreSQL database"}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	snapshot, cleanup, err := snapshotBolt(path)
	if err != nil {
		return nil, err
	}
	m.cleanup = cleanup
	if m.src, err = boltstore.Open(snapshot, boltstore.Options{Logger: slog.New(slog.DiscardHandler), MustExist: true}); err != nil {
		return nil, fmt.Errorf("the snapshot of %s: %w", path, err)
	}
	if m.dst, err = pgstore.Open(ctx, url, pgstore.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return nil, fmt.Errorf("--to: %s", strings.Join(strings.Fields(redactPassword(err.Error(), url)), " "))
	}
	if err := m.halves(); err != nil {
		return nil, err
	}
	empty, err := m.imp.Empty(ctx)
	if err != nil {
		return nil, err
	}
	if !empty {
		return nil, errors.New("the destination database already has users, read tracking or queue entries: migrate copies only into an empty database")
	}
	return m, nil
}

// openPostgresToBolt opens the PostgreSQL database at url and a new bbolt
// file beside path, which commit renames to path. An existing file at
// path is refused unless it is an empty database.
func openPostgresToBolt(ctx context.Context, url, path string) (_ *migration, err error) {
	if path, err = filepath.Abs(path); err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	m := &migration{from: "the PostgreSQL database", to: path}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	if err := checkBoltDestination(path); err != nil {
		return nil, err
	}
	if m.src, err = pgstore.Open(ctx, url, pgstore.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return nil, fmt.Errorf("the configured database: %s", strings.Join(strings.Fields(redactPassword(err.Error(), url)), " "))
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".migrate-*.db")
	if err != nil {
		return nil, fmt.Errorf("--to %s: %w", path, err)
	}
	tmp := f.Name()
	f.Close()
	os.Remove(tmp) // bbolt creates the file itself
	m.cleanup = func() { os.Remove(tmp) }
	if m.dst, err = boltstore.Open(tmp, boltstore.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return nil, fmt.Errorf("--to %s: %w", path, err)
	}
	m.commit = func() error {
		if err := m.dst.Close(); err != nil {
			return fmt.Errorf("--to %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("--to %s: %w", path, err)
		}
		return nil
	}
	return m, m.halves()
}

// checkBoltDestination refuses a path that holds anything but an empty
// bbolt database.
func checkBoltDestination(path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("--to %s: %w", path, err)
	}
	empty, err := boltstore.EmptyFile(path)
	if err != nil {
		return fmt.Errorf("--to %s exists and is not a bbolt database pochta can open (%v): migrate copies only into a new file", path, err)
	}
	if !empty {
		return fmt.Errorf("%s already holds a database with users, read tracking or queue entries: migrate copies only into a new, empty file", path)
	}
	return nil
}

// halves finds the source's Exporter and the destination's Importer.
func (m *migration) halves() error {
	var ok bool
	if m.exp, ok = m.src.(storage.Exporter); !ok {
		return fmt.Errorf("%s cannot be exported", m.from)
	}
	if m.imp, ok = m.dst.(storage.Importer); !ok {
		return fmt.Errorf("%s cannot import", m.to)
	}
	return nil
}

func (m *migration) close() {
	for _, s := range []storage.Store{m.src, m.dst} {
		if s != nil {
			s.Close()
		}
	}
	if m.cleanup != nil {
		m.cleanup()
	}
}

// run copies, compares the counts and commits the copy.
func (m *migration) run(ctx context.Context, e *env) error {
	want, err := storage.CountExport(ctx, m.exp)
	if err != nil {
		return fmt.Errorf("reading %s: %w", m.from, err)
	}
	fmt.Fprintf(e.stdout, "copying %d users, %d mailboxes, %d tracked sent messages, %d queue entries from %s into %s\n",
		want.Users, len(want.Mailboxes), want.Tracking, queueTotal(want.Queue), m.from, m.to)
	partial := " (the destination holds a partial copy: empty it before trying again)"
	if m.commit != nil {
		partial = " (nothing was written to " + m.to + ")"
	}
	if err := m.imp.Import(ctx, progress{m.exp, e}); err != nil {
		return fmt.Errorf("%w%s", err, partial)
	}
	got, err := countStore(ctx, m.dst)
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
	fmt.Fprintf(e.stdout, "read tracking: %d sent messages, copied %d\n", want.Tracking, got.Tracking)
	for _, st := range storage.QueueStatuses {
		fmt.Fprintf(e.stdout, "queue %s: %d entries, copied %d\n", st, want.Queue.ByStatus(st), got.Queue.ByStatus(st))
	}
	if mm := want.Mismatches(got); len(mm) > 0 {
		for _, line := range mm {
			fmt.Fprintln(e.stderr, "mismatch: "+line)
		}
		return fmt.Errorf("%w%s", errMigrateMismatch, partial)
	}
	if m.commit != nil {
		if err := m.commit(); err != nil {
			return err
		}
		m.dst = nil // closed by commit
	}
	fmt.Fprintf(e.stdout, "done: %d users copied, counts match; %s is unchanged; web sessions were not copied (users sign in again)\n", got.Users, m.from)
	return nil
}

func queueTotal(c storage.QueueCounts) int { return c.Outbox + c.Held + c.Sent + c.Failed }

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

// countStore counts the destination through its Store reads: users, each
// mailbox's messages, the users' tracked sent messages and the queue.
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
		sent, err := s.SentStatus(ctx, u.Address)
		if err != nil {
			return nil, err
		}
		c.Tracking += len(sent)
	}
	if c.Queue, err = s.QueueCounts(ctx); err != nil {
		return nil, err
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
