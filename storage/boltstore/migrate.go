package boltstore

// Schema migrations, run by Open before the store serves anything.
//
// Version 1 -> 2 (the change feed): every mailbox gets its "changes" and
// "vanished" buckets, every message modseq 1 with its index entry, the
// mailbox HIGHESTMODSEQ 1 and VanishedFloor 1 (expunges from before the
// feed are not known, so a reader asking about changes since modseq 0 is
// told its vanished list is incomplete). Then version 2 is recorded.
//
// Rules:
//   - A backup comes first: <database>.v1-backup-<UTC time>, written to a
//     temporary name and renamed when complete and synced. When the
//     migration was started before and cut short (some mailbox already
//     migrated) and such a backup exists, it is kept and no second one is
//     taken: it is the copy of the untouched data.
//   - Mailboxes are migrated in batches, each batch one transaction. A
//     mailbox is done when its record has a modseq; a batch redoes a
//     mailbox that is not done from scratch, so a crash at any point
//     leaves version 1 recorded with every mailbox either untouched or
//     wholly migrated (this pochta reads both), and the next Open carries
//     on. The migrated records are version 2 (encoding.go), which the
//     previous release cannot read: going back means the backup.
//   - The version is recorded last, in its own transaction, once every
//     mailbox is done.

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"
)

// migrateV1 brings a version 1 database to schemaVersion.
func migrateV1(db *bolt.DB, path string, log *slog.Logger, opts Options) error {
	start := time.Now()
	type boxRef struct {
		user string
		id   uint64
	}
	var todo []boxRef
	resumed := false
	err := db.View(func(tx *bolt.Tx) error {
		uc := tx.Bucket(bucketUsers).Cursor()
		for uk, uv := uc.First(); uk != nil; uk, uv = uc.Next() {
			if uv != nil {
				continue
			}
			u, err := openUser(tx, string(uk))
			if err != nil {
				return err
			}
			bc := u.boxes.Cursor()
			for id, bv := bc.First(); id != nil; id, bv = bc.Next() {
				if bv != nil {
					continue
				}
				x, err := u.box(beUint64(id))
				if err != nil {
					return err
				}
				if x.rec.ModSeq > 0 {
					resumed = true
					continue
				}
				todo = append(todo, boxRef{user: u.addr, id: x.id})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate schema 1 to %d: %w", schemaVersion, err)
	}
	backup, err := migrationBackup(db, path, start, resumed)
	if err != nil {
		return fmt.Errorf("migrate schema 1 to %d: backup: %w", schemaVersion, err)
	}
	log.Info("storage: migrating the database to schema version 2 (change feed)", "path", path, "backup", backup,
		"mailboxes", len(todo), "resumed", resumed)
	per := opts.migrateBatch
	if per <= 0 {
		per = 64
	}
	for batch := 1; len(todo) > 0; batch++ {
		n := min(per, len(todo))
		refs := todo[:n]
		todo = todo[n:]
		err := db.Update(func(tx *bolt.Tx) error {
			for _, ref := range refs {
				x, err := openBox(tx, ref.user, ref.id)
				if err != nil {
					return err
				}
				if err := x.migrateFeed(); err != nil {
					return fmt.Errorf("mailbox %q of %s: %w", x.rec.Name, ref.user, err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("migrate schema 1 to %d: %w", schemaVersion, err)
		}
		if opts.failMigration != nil {
			if err := opts.failMigration(batch); err != nil {
				return fmt.Errorf("migrate schema 1 to %d: %w", schemaVersion, err)
			}
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, be32(schemaVersion))
	})
	if err != nil {
		return fmt.Errorf("migrate schema 1 to %d: record the version: %w", schemaVersion, err)
	}
	log.Info("storage: database migrated to schema version 2", "path", path, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// migrateFeed gives one mailbox its change feed, unless it has one.
func (x *boxTx) migrateFeed() error {
	if x.rec.ModSeq > 0 {
		return nil
	}
	for _, name := range [][]byte{bucketChanges, bucketVanished} {
		if x.b.Bucket(name) != nil {
			// Not expected (the buckets and the modseq are written in
			// one transaction); rebuilt rather than trusted.
			if err := x.b.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	if err := createFeed(x.b); err != nil {
		return err
	}
	mb, err := x.buckets()
	if err != nil {
		return err
	}
	changes, _, err := x.feed()
	if err != nil {
		return err
	}
	// Keys first: a bucket is not written while a cursor walks it.
	var uids []imap.UID
	c := mb.meta.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == 4 {
			uids = append(uids, imap.UID(binary.BigEndian.Uint32(k)))
		}
	}
	const modseq = 1
	for _, uid := range uids {
		key := be32(uint32(uid))
		m, err := decodeMeta(mb.meta.Get(key))
		if err != nil {
			continue // left as it is, for `pochta check` to quarantine
		}
		m.modseq = modseq
		if err := mb.meta.Put(key, m.encode()); err != nil {
			return err
		}
		if err := changes.Put(feedKey(modseq, uid), []byte{}); err != nil {
			return err
		}
	}
	x.rec.ModSeq = modseq
	x.rec.VanishedFloor = modseq
	return x.save()
}

// migrationBackup writes the database to <path>.v1-backup-<time> and
// returns that name; when resuming, it keeps and returns an existing one
// instead.
func migrationBackup(db *bolt.DB, path string, now time.Time, resuming bool) (string, error) {
	if found, _ := filepath.Glob(path + ".v1-backup-*"); resuming && len(found) > 0 {
		for _, f := range found {
			if filepath.Ext(f) != ".tmp" {
				return f, nil
			}
		}
	}
	name := path + ".v1-backup-" + now.UTC().Format("20060102T150405Z")
	if _, err := os.Stat(name); err == nil {
		name += fmt.Sprintf("-%d", now.UnixNano())
	}
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	err = db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return name, nil
}
