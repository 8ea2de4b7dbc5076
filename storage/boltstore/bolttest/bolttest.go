// Package bolttest damages bbolt databases the way a disk fault would, for
// the tests of other packages (`pochta check`), so that only the bbolt
// backend's own packages import bbolt.
package bolttest

import (
	"encoding/binary"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// SpoilParsed overwrites one message's envelope record (its "parsed"
// record, storage/boltstore/bolt.go has the layout) with bytes that do not
// decode. The database must not be open.
func SpoilParsed(t testing.TB, dbPath, user string, box uint64, uid uint32) {
	t.Helper()
	db, err := bolt.Open(dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, key := make([]byte, 8), make([]byte, 4)
	binary.BigEndian.PutUint64(id, box)
	binary.BigEndian.PutUint32(key, uid)
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("users")).Bucket([]byte(user)).Bucket([]byte("boxes")).Bucket(id).Bucket([]byte("parsed"))
		return b.Put(key, []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// SharedBodies counts the bodies a database stores once for several
// copies ("shared"/"bodies", storage/boltstore/bodies.go) and the
// references their copies hold. The database must not be open.
func SharedBodies(t testing.TB, dbPath string) (bodies, refs int) {
	t.Helper()
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket([]byte("shared"))
		if root == nil {
			return nil
		}
		if b := root.Bucket([]byte("bodies")); b != nil {
			if err := b.ForEach(func(_, v []byte) error {
				if v == nil {
					bodies++
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if r := root.Bucket([]byte("refs")); r != nil {
			return r.ForEach(func(_, v []byte) error {
				if len(v) == 8 {
					refs += int(binary.BigEndian.Uint64(v))
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bodies, refs
}
