package storage

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"
)

// sentBody returns the raw Sent copy, as a client would FETCH it.
func sentBody(t *testing.T, s Store, a *Appended) []byte {
	t.Helper()
	return loadOne(t, s, alice, a.MailboxID, a.UID).Body
}

func TestAppendOfTheServersSentCopyReturnsIt(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "twice", bob)
	raw := sentBody(t, s, res.Sent)
	events := listen(s)
	// Thunderbird appends its copy with \Seen; that must not mark the
	// tracked copy read either.
	a, err := s.Append(context.Background(), alice, Sent, &NewMessage{Raw: raw, Flags: []imap.Flag{imap.FlagSeen}})
	if err != nil {
		t.Fatal(err)
	}
	if *a != *res.Sent {
		t.Fatalf("APPEND gave %+v, want the server's copy %+v", a, res.Sent)
	}
	if st := mustMailbox(t, s, alice, Sent); st.Messages != 1 || st.Unseen != 1 {
		t.Fatalf("Sent %+v: want one unread message", st)
	}
	if evs := events.snapshot(); len(evs) != 0 {
		t.Fatalf("a merged APPEND published %v", evs)
	}
}

func TestAppendWithAnotherUsersMessageIDIsStored(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "not yours", bob)
	raw := sentBody(t, s, res.Sent)
	a := mustAppend(t, s, bob, Sent, string(raw))
	if st := mustMailbox(t, s, bob, Sent); st.Messages != 1 || a.MailboxID != st.ID {
		t.Fatalf("bob's Sent %+v after APPEND %+v", st, a)
	}
	if st := mustMailbox(t, s, alice, Sent); st.Messages != 1 {
		t.Fatalf("alice's Sent changed: %+v", st)
	}
}

func TestAppendWithoutMessageIDIsNeverMerged(t *testing.T) {
	s := trackingStore(t)
	raw := "From: alice@example.com\r\nSubject: no id\r\n\r\nbody\r\n"
	a1 := mustAppend(t, s, alice, Sent, raw)
	a2 := mustAppend(t, s, alice, Sent, raw)
	if a1.UID == a2.UID {
		t.Fatalf("two APPENDs without Message-ID merged into UID %d", a1.UID)
	}
}

func TestAppendOutsideSentOrAfterADayIsStored(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "window", bob)
	raw := string(sentBody(t, s, res.Sent))
	if a := mustAppend(t, s, alice, Drafts, raw); a.MailboxID == res.Sent.MailboxID {
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
	if a := mustAppend(t, s, alice, Sent, raw); a.UID == res.Sent.UID {
		t.Fatal("APPEND a day later was merged")
	}
}

func TestExpungedSentCopyIsNotReturned(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "gone", bob)
	raw := string(sentBody(t, s, res.Sent))
	expunge(t, s, alice, res.Sent)
	if a := mustAppend(t, s, alice, Sent, raw); a.UID == res.Sent.UID {
		t.Fatal("APPEND returned an expunged UID")
	}
}
