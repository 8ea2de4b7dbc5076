package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/storage"
)

// Options configure a store opened with Open.
type Options struct {
	// Logger receives the store's log lines; nil means slog.Default().
	Logger *slog.Logger
	// PasswordCost is the bcrypt cost for new password hashes; 0 means
	// bcrypt.DefaultCost. Tests lower it to bcrypt.MinCost.
	PasswordCost int
	// Quota is the bytes of messages each user may keep; 0 means no limit.
	Quota int64
	// Housekeeping: this handle takes part in the cluster's housekeeping
	// (Leading, and the tombstone sweep). The daemon sets it; a command
	// (pochta migrate, user add...) leaves it off, so a long-running one
	// never holds a job's lock.
	Housekeeping bool
}

// pgStore is a storage.Backend over a pgx pool. Every write is one
// PostgreSQL transaction; this handle's own commits are published to its
// listeners in commit order (commitMu is held from COMMIT until the
// events are out).
type pgStore struct {
	pool     *pgxpool.Pool
	location string
	opts     Options
	log      *slog.Logger

	closed    atomic.Bool
	closeOnce sync.Once
	stopSweep chan struct{}
	sweepDone chan struct{}

	commitMu  sync.Mutex
	listenMu  sync.Mutex
	listeners []func(storage.Event)
	// watch announces other nodes' commits; started by the first Listen.
	// It is set with commitMu held (so an own commit is either in the
	// watch's first read or recorded by it).
	watch     atomic.Pointer[watch]
	watchOnce sync.Once
	// token tells this handle's own notifications from other nodes'
	// where the payload carries the change (read tracking).
	token string
	// lead is this node's share of the cluster's housekeeping (Leading).
	lead leadership
}

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// libpq key=value string), applies the schema migrations and returns the
// store. The rules (read tracking, the queue's limits, ...) are those of
// package storage, over this backend's records.
func Open(ctx context.Context, url string, opts Options) (storage.Store, error) {
	b, err := openBackend(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	st, err := storage.New(b, storage.RulesOptions{PasswordCost: opts.PasswordCost})
	if err != nil {
		b.Close()
		return nil, err
	}
	return st, nil
}

func openBackend(ctx context.Context, dsn string, opts Options) (*pgStore, error) {
	if opts.PasswordCost == 0 {
		opts.PasswordCost = bcrypt.DefaultCost
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	pool, err := Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if w, err := DurabilityWarning(ctx, pool); err == nil && w != "" {
		log.Warn("pgstore: " + w)
	}
	s := &pgStore{pool: pool, location: dsn, opts: opts, log: log,
		stopSweep: make(chan struct{}), sweepDone: make(chan struct{})}
	s.lead.retry = leaderRetry
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s.token = hex.EncodeToString(tok[:])
	if opts.Housekeeping {
		go s.runSweeper(s.stopSweep, s.sweepDone)
	} else {
		close(s.sweepDone)
	}
	return s, nil
}

// Redacted returns dsn fit for logs and Stats: a postgres:// URL's
// password, or a key=value string's password=, replaced by "xxxxx";
// without a password, dsn unchanged.
func Redacted(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
		return dsn
	}
	return keyPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// keyPassword finds the password of a key=value connection string.
var keyPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Quota implements storage.Backend.
func (s *pgStore) Quota() int64 { return s.opts.Quota }

// Listen implements storage.Backend: fn gets the events of this handle's
// own commits, in commit order, right after each commit, and those of
// other nodes' (handles') commits on the same database, read from the
// change feed when a NOTIFY hints at them (watch.go), each once.
func (s *pgStore) Listen(fn func(storage.Event)) {
	s.listenMu.Lock()
	s.listeners = append(s.listeners, fn)
	s.listenMu.Unlock()
	if !s.closed.Load() {
		s.watchOnce.Do(s.startWatch)
	}
}

// publish hands out an own commit's events (commitMu held) and notes
// them, so the watch does not announce them again.
func (s *pgStore) publish(evs []storage.Event) {
	if len(evs) == 0 {
		return
	}
	if w := s.watch.Load(); w != nil {
		w.recordOwn(evs)
	}
	s.fanOut(evs)
}

func (s *pgStore) fanOut(evs []storage.Event) {
	if len(evs) == 0 {
		return
	}
	s.listenMu.Lock()
	ls := slices.Clone(s.listeners)
	s.listenMu.Unlock()
	for _, ev := range evs {
		for _, fn := range ls {
			fn(ev)
		}
	}
}

// write runs fn in one transaction and commits it; the events fn adds are
// published after the commit, in commit order. A failed fn or commit
// keeps nothing.
//
// A transaction PostgreSQL aborts for a deadlock or a serialization
// failure (two nodes' writes crossing) is run again, up to maxAttempts
// times: fn must assign its results, not accumulate them.
func (s *pgStore) write(ctx context.Context, fn func(tx pgx.Tx, ev *storage.Events) error) error {
	var err error
	for range maxAttempts {
		if err = s.writeOnce(ctx, fn); !retryable(err) {
			return err
		}
	}
	return err
}

// maxAttempts bounds how often write runs a transaction PostgreSQL aborted.
const maxAttempts = 5

// retryable reports a deadlock or a serialization failure.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

func (s *pgStore) writeOnce(ctx context.Context, fn func(tx pgx.Tx, ev *storage.Events) error) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	ev := storage.NewEvents(storage.OriginOf(ctx))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.dbErr(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit: a no-op
	if err := fn(tx, &ev); err != nil {
		return err
	}
	// A mailbox-list change wakes the other nodes' watches (messages
	// and queue entries send their own NOTIFY).
	if slices.ContainsFunc(ev.List(), func(e storage.Event) bool { return e.Kind == storage.EventMailboxes }) {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, 'mailboxes')", ChannelMailbox); err != nil {
			return s.dbErr(err)
		}
	}
	// Read-tracking and account changes travel whole in their
	// notifications: the other nodes have no feed to read them from.
	for _, e := range ev.List() {
		if !carried(e.Kind) {
			continue
		}
		note, err := eventNote(s.token, e)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", ChannelMailbox, note); err != nil {
			return s.dbErr(err)
		}
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	var before []storage.Event
	if w := s.watch.Load(); w != nil {
		if before, err = w.beforeOwnCommit(ctx, tx, ev.List()); err != nil {
			return s.dbErr(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return s.dbErr(err)
	}
	s.publish(append(before, ev.List()...))
	return nil
}

// view runs fn in a read-only transaction that sees one snapshot.
func (s *pgStore) view(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return s.dbErr(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	if err := fn(tx); err != nil {
		return err
	}
	return s.dbErr(tx.Commit(ctx))
}

func (s *pgStore) dbErr(err error) error {
	if err != nil && s.closed.Load() {
		return storage.ErrClosed
	}
	return err
}

// Backup implements storage.Backend by refusing: a PostgreSQL database is
// backed up by PostgreSQL's own tools, which pochta does not replace.
func (s *pgStore) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return 0, fmt.Errorf("pgstore: backup: a PostgreSQL database is backed up with pg_dump or a base backup (pg_basebackup), not by pochta: %w", errors.ErrUnsupported)
}

// Stats implements storage.Backend: Path is the location Open was given
// (its password redacted), Size the database's size on disk.
func (s *pgStore) Stats(ctx context.Context) (*storage.Stats, error) {
	st := &storage.Stats{Path: Redacted(s.location)}
	err := s.view(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT pg_database_size(current_database()),
			(SELECT count(*) FROM users), (SELECT count(*) FROM messages)`).Scan(&st.Size, &st.Users, &st.Messages)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: stats: %w", err)
	}
	return st, nil
}

// Close implements storage.Backend: it waits for the queries in flight and
// closes the pool. Closing twice is harmless.
func (s *pgStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopSweep)
		<-s.sweepDone
		s.stopWatch()
		s.closed.Store(true)
		s.stopLeading()
		s.pool.Close()
	})
	return nil
}
