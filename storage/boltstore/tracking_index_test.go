package boltstore

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// sentBody returns the raw Sent copy, as a client would FETCH it.
func sentBody(t *testing.T, s storage.Store, a *storage.Appended) []byte {
	t.Helper()
	return loadOne(t, s, alice, a.MailboxID, a.UID).Body
}

func TestAppendOutsideSentOrAfterADayIsStored(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "window", bob)
	raw := string(sentBody(t, s, res.Sent))
	if a := mustAppend(t, s, alice, storage.Drafts, raw); a.MailboxID == res.Sent.MailboxID {
		t.Fatalf("APPEND to Drafts went to Sent: %+v", a)
	}
	// Age the index entry by 25 hours.
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers).Bucket([]byte(alice)).Bucket(bucketSentIDs)
		c := b.Cursor()
		k, v := c.First()
		nv := append([]byte(nil), v...)
		binary.BigEndian.PutUint64(nv[12:], uint64(time.Now().Add(-25*time.Hour).UnixNano()))
		return b.Put(append([]byte(nil), k...), nv)
	})
	if err != nil {
		t.Fatal(err)
	}
	if a := mustAppend(t, s, alice, storage.Sent, raw); a.UID == res.Sent.UID {
		t.Fatal("APPEND a day later was merged")
	}
}
