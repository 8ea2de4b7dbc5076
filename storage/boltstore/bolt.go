// Package boltstore is pochta's bbolt backend: the records of package
// storage in one bbolt file, and the only package that imports bbolt.
// Open returns storage.New over them, so the rules of package storage
// apply as with any backend.
//
// Promises, besides those of storage.Store:
//   - One process per file: Open fails with storage.ErrLocked while another
//     process has the database open (after Options.LockTimeout).
//   - A file that is empty, not a bbolt database, or damaged is refused
//     with storage.ErrDamaged (a *storage.DamagedError naming the file and
//     what to do), never initialised over; a damaged page met later fails
//     one request, not the daemon.
//   - Durability: a write returns after bbolt's commit with fsync.
//   - Group commit: one writer goroutine runs concurrent writes in shared
//     transactions (writer.go has the rules), bounded by Options.MaxBatch
//     and MaxBatchBytes; a write that fails is run again alone, so it
//     fails nobody else; events reach the listeners after the commit, in
//     commit order, before any writer of that commit is answered.
//   - A database of schema version 1 is migrated in place at Open, a
//     backup taken first; a crash midway leaves the old data usable
//     (migrate.go).
//   - Isolation between users comes from the layout below: a mailbox is
//     reached only through its user's bucket.
//   - Moves between backends (export.go, import.go): Export walks one read
//     transaction and writes nothing; Import copies every record a user or
//     an operator can read, with the source's UIDs, modseqs, tracking and
//     queue IDs (mailboxes get new IDs, rewritten wherever a record names
//     one); EmptyFile tells whether a file may receive one without
//     writing to it.
package boltstore

// The bbolt layout (keys in quotes are literal; uint64 and uint32 keys are
// big-endian so cursors walk them in ascending order):
//
//	"meta"                     schema "version" (migrate.go), "uidvalidity" (last issued);
//	                           its bucket sequence issues mailbox IDs
//	"users"/<address>          one bucket per user:
//	    "info"                 userRecord (JSON: rarely read, easy to extend)
//	    "names"/<name>         -> mailbox ID (uint64)
//	    "subs"/<name>          subscribed names, also of deleted mailboxes
//	                              (subscriptions.go)
//	    "graves"/<name>        -> UIDNEXT the name had when it was deleted or
//	                              renamed away, so a mailbox created again under
//	                              that name never hands out an old UID
//	    "boxes"/<id>           one bucket per mailbox:
//	        "info"             mailboxRecord (name, UIDVALIDITY, UIDNEXT, counters)
//	        "meta"/<uid>       metaRecord: flags, internal date, size
//	        "parsed"/<uid>     envelope + body structure
//	        "body"/<uid>       the raw message, or only its header when
//	                           "bodyref"/<uid> names a shared body (bodies.go)
//	        "changes", "vanished"  the change feed: modseq index and
//	                           expunge tombstones (feed.go)
//	    "tracked"/<box><uid>   -> read-tracking record ID (records_bolt.go;
//	                              the rules: storage/tracking.go)
//	    "sentlog"/<id>         the read-tracking records the user sent
//	    "sentids"/<Message-ID> -> the copy in Sent, for APPEND de-duplication
//	                              (tracking_index_bolt.go)
//	    "webprefs"             WebPrefs (JSON): web interface choices (websessions.go)
//	"tracking"/<id>            read-tracking record (JSON); sequence issues IDs
//	"unread"/<date><box><uid><address>
//	                           INBOX messages without \Seen by internal date,
//	                           for the unread-lifetime sweep (expiry_bolt.go)
//	"shared"/…                 bodies stored once for all the copies of a
//	                           delivery, with their reference counts (bodies.go)
//	"queue"/…                  the outbound queue: entries, bodies, the due
//	                           index, counts, daily limit counters, relay
//	                           state (layout in queue.go)
//	"websessions"/<sha256>     web sign-in sessions by token hash (websessions.go)
//
// Mailboxes are reached only through their user's bucket, so a mailbox ID
// from another user's session resolves to ErrNotFound: isolation between
// users comes from the layout, not from checks someone could forget.
// Metadata, parsed structure and body sit in separate buckets so that
// SELECT, UID SEARCH and FETCH FLAGS read small pages only.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/bcrypt"
)

// schemaVersion 2 added the change feed (modseqs, feed.go); Open migrates
// a version 1 database (migrate.go).
const schemaVersion = 2

var (
	bucketMeta    = []byte("meta")
	bucketUsers   = []byte("users")
	keyVersion    = []byte("version")
	keyUIDValid   = []byte("uidvalidity")
	keyInfo       = []byte("info")
	bucketNames   = []byte("names")
	bucketGraves  = []byte("graves")
	bucketBoxes   = []byte("boxes")
	bucketMsgMeta = []byte("meta")
	bucketParsed  = []byte("parsed")
	bucketBody    = []byte("body")
)

// initialMmapSize is the address space bbolt maps up front. Each time the
// file outgrows the mapping, bbolt remaps it and first copies every value
// the open write transaction touched onto the heap: with a few 25 MB
// messages in a batch that was most of a big delivery's memory. Mapping
// 1 GiB of address space (not memory: pages are read in on demand)
// removes those copies until the database reaches that size.
const initialMmapSize = 1 << 30

// Options tune a bbolt-backed store.
type Options struct {
	// Logger receives the store's log lines; nil means slog.Default().
	Logger *slog.Logger
	// LockTimeout is how long Open waits for another process to release
	// the database before failing with ErrLocked; 0 means one second.
	LockTimeout time.Duration
	// PasswordCost is the bcrypt cost for new password hashes; 0 means
	// bcrypt.DefaultCost. Tests lower it to bcrypt.MinCost.
	PasswordCost int
	// MaxBatch bounds how many write requests share one transaction;
	// 0 means 256.
	MaxBatch int
	// MaxBatchBytes bounds the message bytes written in one shared
	// transaction; 0 means 32 MiB. A single larger request still runs,
	// in a transaction of its own.
	MaxBatchBytes int
	// MustExist makes Open fail with ErrNoDatabase instead of creating a
	// new, empty database where none exists. Only the commands that are
	// meant to start a store (serve, user add) leave it false.
	MustExist bool
	// Quota is the bytes of messages each user may keep (RFC 9208's
	// STORAGE resource); 0 means no limit (quota.go).
	Quota int64

	// migrateBatch bounds the mailboxes migrated per transaction (0: 64)
	// and failMigration, when set, is called after each committed batch;
	// an error from it stops the migration (the tests' crash).
	migrateBatch  int
	failMigration func(batch int) error
}

type boltStore struct {
	db   *bolt.DB
	path string
	log  *slog.Logger

	quota int64 // Options.Quota

	// Writer state (writer.go).
	reqs       chan *request
	closing    sync.RWMutex // held for reading while submitting; Close takes it for writing
	closed     bool
	writerDone chan struct{}
	maxBatch   int
	maxBytes   int
	txCount    atomic.Uint64 // committed or attempted write transactions

	listenMu  sync.Mutex
	listeners []func(storage.Event)

	// The tombstone sweeper (feed.go).
	sweepStop chan struct{}
	sweepDone chan struct{}
	feedReads atomic.Uint64 // change index entries read by Changes (tests)
}

// Open opens (creating if needed, unless Options.MustExist) the bbolt
// database at path. When another process has it open, Open fails after
// Options.LockTimeout with an error wrapping ErrLocked. A file that exists
// but is empty or not a bbolt database is refused (ErrDamaged), never
// initialised over; so is a file bbolt cannot read.
func Open(path string, opts Options) (storage.Store, error) {
	s, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	st, err := storage.New(s, storage.RulesOptions{PasswordCost: opts.PasswordCost})
	if err != nil {
		s.Close()
		return nil, err
	}
	return st, nil
}

func openBolt(path string, opts Options) (*boltStore, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	// Checked before the file is touched (storage.NewRules checks it too).
	cost := opts.PasswordCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("storage: password cost %d: %w", cost, storage.ErrInvalid)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	switch err := checkFile(path); {
	case errors.Is(err, fs.ErrNotExist):
		if opts.MustExist {
			return nil, fmt.Errorf("storage: %s: %w", path, storage.ErrNoDatabase)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("storage: create directory: %w", err)
		}
	case err != nil:
		return nil, err
	}
	// The timeout turns a second process into a clear error instead of a
	// hang; the default fsync on commit (NoSync false) is what makes an
	// acknowledged message durable.
	db, err := openRecovering(path, timeout)
	if err != nil {
		return nil, err
	}
	if err := guard(path, func() error { return initSchema(db, path, log, opts) }); err != nil {
		db.Close()
		if errors.Is(err, storage.ErrDamaged) {
			return nil, err
		}
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	s := &boltStore{
		db:         db,
		path:       path,
		log:        log,
		reqs:       make(chan *request, 1024),
		writerDone: make(chan struct{}),
		maxBatch:   opts.MaxBatch,
		maxBytes:   opts.MaxBatchBytes,
		quota:      opts.Quota,
		sweepStop:  make(chan struct{}),
		sweepDone:  make(chan struct{}),
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 256
	}
	if s.maxBytes <= 0 {
		s.maxBytes = 32 << 20
	}
	go s.runWriter()
	go s.runSweeper()
	return s, nil
}

// bboltMagic opens every bbolt meta page, after the 16-byte page header.
const bboltMagic = 0xED0CDAED

// checkFile refuses a file that is not a bbolt database before bolt.Open
// sees it: bolt.Open would initialise an empty file as a new store, so a
// database truncated to zero bytes would silently become an empty one.
// The magic is looked for in both meta pages (at 0 and at the page size),
// since bbolt itself survives one damaged meta page.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("storage: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("storage: %s is a directory, not a database file: %w", path, storage.ErrInvalid)
	}
	if fi.Size() == 0 {
		return &storage.DamagedError{Path: path, Sentence: fmt.Sprintf("%s is an empty file, not a pochta database (a full disk or a crash may have truncated it); "+
			"restore it from a backup, or remove it to start with an empty store", path)}
	}
	head := make([]byte, 20)
	for _, off := range []int64{0, 4096, int64(os.Getpagesize()), 16384, 65536} {
		if n, _ := f.ReadAt(head, off); n == len(head) && binary.LittleEndian.Uint32(head[16:]) == bboltMagic {
			return nil
		}
	}
	return &storage.DamagedError{Path: path, Sentence: fmt.Sprintf("%s is not a pochta database (not a bbolt file); check [message_server] database, "+
		"or restore the file from a backup", path)}
}

// damagedError is the one message a person gets for a file bbolt cannot
// read: which file, and what to do about it. A page bbolt cannot read is
// not one record `pochta check --repair` could quarantine, so the advice
// is the backup; check lists what the damage reaches.
func damagedError(path string, cause any) error {
	return &storage.DamagedError{Path: path, Cause: fmt.Sprint(cause), Sentence: fmt.Sprintf("%s is damaged; "+
		"stop the daemon and restore the file from a backup (`pochta check` lists what the damage reaches)", path)}
}

// guard runs fn, turning a bbolt panic on a damaged page (bbolt panics on
// pages it cannot interpret, and a page pointer past the file faults) into
// a damaged-database error, so one bad page fails one request, not the
// daemon.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = damagedError(path, p)
		}
	}()
	return fn()
}

// openRecovering is bolt.Open with its errors and panics on a damaged file
// turned into ErrDamaged (it reads the meta pages and the freelist).
func openRecovering(path string, timeout time.Duration) (db *bolt.DB, err error) {
	err = guard(path, func() error {
		var oerr error
		db, oerr = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, InitialMmapSize: initialMmapSize})
		return oerr
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("storage: open %s: %w", path, storage.ErrLocked)
	case errors.Is(err, storage.ErrDamaged):
		return nil, err
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
		return nil, damagedError(path, err)
	}
	return nil, fmt.Errorf("storage: open %s: %w", path, err)
}

// initSchema creates the buckets of a new database and records the
// schema version; a version 1 database is migrated (migrate.go).
func initSchema(db *bolt.DB, path string, log *slog.Logger, opts Options) error {
	version := uint32(0)
	err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketUsers); err != nil {
			return err
		}
		if err := migrateIndexes(tx); err != nil {
			return err
		}
		if err := migrateSubscriptions(tx); err != nil {
			return err
		}
		if v := meta.Get(keyVersion); v != nil {
			if len(v) != 4 {
				return fmt.Errorf("schema version: %w", errCorrupt)
			}
			version = binary.BigEndian.Uint32(v)
			if version != schemaVersion && version != 1 {
				return fmt.Errorf("schema version %d, this pochta knows %d", version, schemaVersion)
			}
			return nil
		}
		version = schemaVersion
		return meta.Put(keyVersion, be32(schemaVersion))
	})
	if err != nil || version == schemaVersion {
		return err
	}
	return migrateV1(db, path, log, opts)
}

// Close waits for queued writes, stops the writer and closes the database.
func (s *boltStore) Close() error {
	s.closing.Lock()
	if s.closed {
		s.closing.Unlock()
		return nil
	}
	s.closed = true
	close(s.sweepStop)
	s.closing.Unlock()
	<-s.sweepDone // it may be waiting for a write: let it finish first
	s.closing.Lock()
	close(s.reqs)
	s.closing.Unlock()
	<-s.writerDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// Listen registers fn for every committed event (see writer.go).
func (s *boltStore) Listen(fn func(storage.Event)) {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	s.listeners = append(s.listeners, fn)
}

// view runs a read transaction, mapping a closed database to ErrClosed.
func (s *boltStore) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := guard(s.path, func() error { return s.db.View(fn) })
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	return err
}

// Backup writes a consistent snapshot: a read transaction sees one commit,
// and the writer keeps committing meanwhile. (Should the file have to grow
// past its current memory map during a long backup, bolt makes that one
// commit wait for the backup to end; the map grows by doubling, so this is
// rare.)
func (s *boltStore) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("storage: backup: %w", err)
	}
	return n, nil
}

// ctxWriter stops a long backup when its context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Stats counts users and messages; messages come from the mailbox counters,
// so the cost is one small read per mailbox.
func (s *boltStore) Stats(ctx context.Context) (*storage.Stats, error) {
	st := &storage.Stats{Path: s.path}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		st.Size = tx.Size()
		c := tx.Bucket(bucketUsers).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil {
				continue
			}
			st.Users++
			boxes := tx.Bucket(bucketUsers).Bucket(k).Bucket(bucketBoxes)
			if boxes == nil {
				continue
			}
			bc := boxes.Cursor()
			for id, bv := bc.First(); id != nil; id, bv = bc.Next() {
				if bv != nil {
					continue
				}
				rec, err := decodeMailbox(boxes.Bucket(id).Get(keyInfo))
				if err != nil {
					return fmt.Errorf("mailbox %x: %w", id, err)
				}
				st.Messages += int(rec.Messages)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: stats: %w", err)
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.Size = fi.Size()
	}
	return st, nil
}

func be32(v uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
