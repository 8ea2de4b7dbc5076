package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

const (
	sbAlice = "alice@example.com"
	sbBob   = "bob@example.com"
	sbCarol = "carol@example.com"
	sbDave  = "dave@example.com"
)

// bigDelivery is one message of about size bytes as smtpd hands it over:
// the three copies are slices of one buffer that differ in their header
// (the Sent copy keeps Bcc, the delivered copy has a Return-Path, the
// relay copy has neither).
func bigDelivery(sender string, size int, external ...string) *storage.Delivery {
	body := bytes.Repeat([]byte(strings.Repeat("y", 76)+"\r\n"), size/78)
	head := "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: big\r\nMessage-ID: <big@example.com>\r\n"
	buf := []byte("Return-Path: <alice@example.com>\r\n" + head + "\r\n")
	buf = append(buf, body...)
	delivered := buf
	relayed := buf[len("Return-Path: <alice@example.com>\r\n"):]
	d := &storage.Delivery{
		Recipients: []string{sbBob, sbCarol, sbDave},
		Copy:       &storage.NewMessage{Raw: delivered},
		From:       sbAlice,
		MessageID:  "<big@example.com>",
		Subject:    "big",
	}
	if sender != "" {
		sent := append([]byte(head+"Bcc: eve@example.com\r\n\r\n"), relayed[len(head)+2:]...)
		d.Sender, d.SentCopy = sender, &storage.NewMessage{Raw: sent}
	}
	if len(external) > 0 {
		d.External, d.RelayCopy = external, &storage.NewMessage{Raw: relayed}
	}
	return d
}

func sharedStore(t *testing.T) (*testStore, string) {
	t.Helper()
	s, path := openTestStore(t)
	for _, u := range []string{sbAlice, sbBob, sbCarol, sbDave} {
		mustCreateUser(t, s, u)
	}
	return s, path
}

// sharedRecords reads the shared bodies straight from the file: the count
// of each body by ID.
func sharedRecords(t *testing.T, s *testStore) map[uint64]int64 {
	t.Helper()
	out := map[uint64]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		bodies, refs := sharedBucket(tx, bucketSharedBodies), sharedBucket(tx, bucketSharedRefs)
		if bodies != nil {
			if err := bodies.ForEach(func(k, _ []byte) error {
				out[binary.BigEndian.Uint64(k)] = 0
				return nil
			}); err != nil {
				return err
			}
		}
		if refs != nil {
			return refs.ForEach(func(k, v []byte) error {
				id := binary.BigEndian.Uint64(k)
				if _, ok := out[id]; !ok {
					t.Errorf("a count for shared body %d, which does not exist", id)
				}
				out[id] = int64(binary.BigEndian.Uint64(v))
				return nil
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantShared asserts the one shared body's count (or, with refs 0, that
// no shared body is left), and that Check agrees nothing is amiss.
func wantShared(t *testing.T, s *testStore, refs int64, after string) {
	t.Helper()
	recs := sharedRecords(t, s)
	switch {
	case refs == 0 && len(recs) != 0:
		t.Fatalf("after %s: shared bodies %v, want none left", after, recs)
	case refs > 0 && len(recs) != 1:
		t.Fatalf("after %s: shared bodies %v, want one", after, recs)
	}
	for id, n := range recs {
		if n != refs {
			t.Fatalf("after %s: shared body %d has %d refs, want %d", after, id, n, refs)
		}
	}
	rep, err := s.Check(context.Background(), false)
	if err != nil {
		t.Fatalf("check after %s: %v", after, err)
	}
	if len(rep.Bad) != 0 {
		t.Fatalf("check after %s: %+v", after, rep.Bad)
	}
}

func onlyMessage(t *testing.T, s storage.Store, user, mailbox string) *storage.Message {
	t.Helper()
	st := mustMailbox(t, s, user, mailbox)
	msgs, err := s.Messages(context.Background(), user, st.ID, mustUIDs(t, s, user, st.ID), storage.LoadOptions{Body: true, Header: true})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%s of %s: %d messages, %v; want one", mailbox, user, len(msgs), err)
	}
	return msgs[0]
}

func queueBody(t *testing.T, s storage.Store, id uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := s.QueueBody(context.Background(), id, &buf); err != nil {
		t.Fatalf("queue body %d: %v", id, err)
	}
	return buf.Bytes()
}

func TestADeliveryStoresItsBodyOnceAndTheLastRemovalFreesIt(t *testing.T) {
	s, _ := sharedStore(t)
	ctx := context.Background()
	d := bigDelivery("", 300<<10, "x@remote.test")
	res, err := s.Deliver(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	// Three INBOX copies and the queue entry refer to one body.
	wantShared(t, s, 4, "delivery")
	for _, u := range []string{sbBob, sbCarol, sbDave} {
		m := onlyMessage(t, s, u, storage.Inbox)
		if !bytes.Equal(m.Body, d.Copy.Raw) || m.Size != int64(len(d.Copy.Raw)) || !bytes.HasPrefix(m.Body, m.Header) || !bytes.HasPrefix(m.Header, []byte("Return-Path: ")) {
			t.Fatalf("%s's copy (%d bytes, header %q) is not the delivered message", u, len(m.Body), m.Header)
		}
	}
	if e := mustEntry(t, s, res.QueueID); e.Body != string(d.RelayCopy.Raw) {
		t.Fatalf("queue entry body of %d bytes, want the relay copy's %d", len(e.Body), len(d.RelayCopy.Raw))
	}
	if got := queueBody(t, s, res.QueueID); !bytes.Equal(got, d.RelayCopy.Raw) {
		t.Fatalf("streamed queue body of %d bytes, want the relay copy's %d", len(got), len(d.RelayCopy.Raw))
	}

	// Expunge bob's copy.
	bob := res.Copies[sbBob]
	if _, err := s.StoreFlags(ctx, sbBob, bob.MailboxID, []imap.UID{bob.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, sbBob, bob.MailboxID, nil); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 3, "an expunge")

	// A COPY into a folder adds a ref; deleting the folder drops it.
	if err := s.CreateMailbox(ctx, sbCarol, "Keep"); err != nil {
		t.Fatal(err)
	}
	carol := res.Copies[sbCarol]
	if _, err := s.Copy(ctx, sbCarol, carol.MailboxID, []imap.UID{carol.UID}, "Keep"); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 4, "a copy")
	if m := onlyMessage(t, s, sbCarol, "Keep"); !bytes.Equal(m.Body, d.Copy.Raw) {
		t.Fatal("the copy in Keep is not the message")
	}
	if err := s.DeleteMailbox(ctx, sbCarol, "Keep"); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 3, "deleting a mailbox")

	if err := s.DeleteUser(ctx, sbDave); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 2, "deleting a user")

	// The unread-lifetime sweep removes carol's copy.
	if n, err := s.ExpireUnread(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("expired %d, %v; want carol's copy", n, err)
	}
	wantShared(t, s, 1, "the unread-lifetime sweep")
	if got := queueBody(t, s, res.QueueID); !bytes.Equal(got, d.RelayCopy.Raw) {
		t.Fatal("the queue entry lost its body with the last mailbox copy")
	}

	if err := s.DeleteQueueEntry(ctx, res.QueueID); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 0, "deleting the queue entry")
	if _, err := s.QueueBody(ctx, res.QueueID, &bytes.Buffer{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("body of a deleted entry: %v, want ErrNotFound", err)
	}
}

func TestTheSentCopyKeepsItsBccAndSharesTheBody(t *testing.T) {
	s, path := sharedStore(t)
	d := bigDelivery(sbAlice, 200<<10, "x@remote.test")
	res := mustDeliver(t, s, d)
	// Sent, three INBOX copies and the queue entry.
	wantShared(t, s, 5, "delivery")
	s = reopen(t, s, path)
	sent := onlyMessage(t, s, sbAlice, storage.Sent)
	if !bytes.Equal(sent.Body, d.SentCopy.Raw) || !strings.Contains(string(sent.Header), "Bcc: eve@example.com") {
		t.Fatalf("Sent copy with header %q: want the sender's copy with its Bcc", sent.Header)
	}
	if m := onlyMessage(t, s, sbBob, storage.Inbox); strings.Contains(string(m.Header), "Bcc") || !bytes.Equal(m.Body, d.Copy.Raw) {
		t.Fatalf("bob's header %q: want the delivered copy", m.Header)
	}
	claimed, err := s.ClaimQueueEntry(context.Background(), storage.QueueClaim{ID: res.QueueID, Now: time.Now(), Day: "2030-01-01", HoldUntil: time.Now().Add(time.Hour),
		Owner: "node-a", LeaseUntil: time.Now().Add(time.Minute)})
	if err != nil || claimed.Entry == nil {
		t.Fatalf("claim: %+v, %v", claimed, err)
	}
	if claimed.Entry.Body != "" || claimed.Entry.Header != string(d.RelayCopy.Raw[:headerLen(d.RelayCopy.Raw)]) {
		t.Fatalf("claimed entry: body of %d bytes, header %q; want the header only", len(claimed.Entry.Body), claimed.Entry.Header)
	}
}

func TestCopyAndMoveOfASharedBodyAddARefNotABody(t *testing.T) {
	s, _ := sharedStore(t)
	ctx := context.Background()
	d := bigDelivery("", 200<<10)
	d.Recipients = []string{sbBob}
	res := mustDeliver(t, s, d)
	wantShared(t, s, 1, "delivery")
	bob := res.Copies[sbBob]
	if err := s.CreateMailbox(ctx, sbBob, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy(ctx, sbBob, bob.MailboxID, []imap.UID{bob.UID}, "Archive"); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 2, "a copy")
	moved, err := s.Move(ctx, sbBob, bob.MailboxID, []imap.UID{bob.UID}, storage.Trash)
	if err != nil || len(moved.DestUIDs) != 1 {
		t.Fatalf("move: %+v, %v", moved, err)
	}
	wantShared(t, s, 2, "a move")
	for _, box := range []string{"Archive", storage.Trash} {
		if m := onlyMessage(t, s, sbBob, box); !bytes.Equal(m.Body, d.Copy.Raw) {
			t.Fatalf("the message in %s is not the delivered one", box)
		}
	}
	trash := mustMailbox(t, s, sbBob, storage.Trash)
	if _, err := s.StoreFlags(ctx, sbBob, trash.ID, moved.DestUIDs, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, sbBob, trash.ID, nil); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 1, "expunging the moved copy")
	if err := s.DeleteUser(ctx, sbBob); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 0, "deleting the user")
}

// toInline rewrites every copy and queue entry into the form messages had
// before shared bodies (the whole message in "body", no refs, no "shared"
// bucket), as a database written by an earlier pochta holds them.
func toInline(t *testing.T, s *testStore) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		rewrite := func(body, refs *bolt.Bucket) error {
			if refs == nil {
				return nil
			}
			var keys [][]byte
			if err := refs.ForEach(func(k, _ []byte) error { keys = append(keys, clone(k)); return nil }); err != nil {
				return err
			}
			for _, k := range keys {
				m, err := loadStored(tx, body, refs, k)
				if err != nil {
					return err
				}
				if err := body.Put(k, m.bytes()); err != nil {
					return err
				}
			}
			return nil
		}
		users := tx.Bucket(bucketUsers)
		err := users.ForEach(func(addr, _ []byte) error {
			boxes := users.Bucket(addr).Bucket(bucketBoxes)
			return boxes.ForEach(func(id, _ []byte) error {
				b := boxes.Bucket(id)
				if err := rewrite(b.Bucket(bucketBody), b.Bucket(bucketBodyRef)); err != nil {
					return err
				}
				if b.Bucket(bucketBodyRef) == nil {
					return nil
				}
				return b.DeleteBucket(bucketBodyRef)
			})
		})
		if err != nil {
			return err
		}
		if err := rewrite(queueBucket(tx, bucketQBodies), queueBucket(tx, bucketQBodyRefs)); err != nil {
			return err
		}
		if queueBucket(tx, bucketQBodyRefs) != nil {
			if err := tx.Bucket(bucketQueue).DeleteBucket(bucketQBodyRefs); err != nil {
				return err
			}
		}
		return tx.DeleteBucket(bucketShared)
	})
	if err != nil {
		t.Fatalf("rewriting into the old form: %v", err)
	}
}

func TestMessagesStoredWholeBeforeSharedBodiesStayReadable(t *testing.T) {
	s, path := sharedStore(t)
	ctx := context.Background()
	d := bigDelivery(sbAlice, 200<<10, "x@remote.test")
	res := mustDeliver(t, s, d)
	toInline(t, s)
	s = reopen(t, s, path)
	wantShared(t, s, 0, "the rewrite into the old form")

	if m := onlyMessage(t, s, sbAlice, storage.Sent); !bytes.Equal(m.Body, d.SentCopy.Raw) {
		t.Fatal("the old Sent copy does not read back")
	}
	bob := onlyMessage(t, s, sbBob, storage.Inbox)
	if !bytes.Equal(bob.Body, d.Copy.Raw) || !bytes.Equal(bob.Header, d.Copy.Raw[:headerLen(d.Copy.Raw)]) {
		t.Fatal("the old INBOX copy does not read back")
	}
	if e := mustEntry(t, s, res.QueueID); e.Body != string(d.RelayCopy.Raw) {
		t.Fatal("the old queue entry's body does not read back")
	}
	if got := queueBody(t, s, res.QueueID); !bytes.Equal(got, d.RelayCopy.Raw) {
		t.Fatal("the old queue entry's body does not stream")
	}
	// A copy of an old record is a whole copy, as before.
	box := res.Copies[sbBob]
	if _, err := s.Copy(ctx, sbBob, box.MailboxID, []imap.UID{box.UID}, storage.Trash); err != nil {
		t.Fatal(err)
	}
	if m := onlyMessage(t, s, sbBob, storage.Trash); !bytes.Equal(m.Body, d.Copy.Raw) {
		t.Fatal("the copy of an old record does not read back")
	}
	// New deliveries next to the old records share again.
	mustDeliver(t, s, bigDelivery("", 200<<10))
	wantShared(t, s, 3, "a new delivery")
	if err := s.DeleteQueueEntry(ctx, res.QueueID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, sbBob); err != nil {
		t.Fatal(err)
	}
	wantShared(t, s, 2, "removing old records")
}

func TestCheckReportsADanglingSharedBody(t *testing.T) {
	s, _ := sharedStore(t)
	ctx := context.Background()
	d := bigDelivery("", 200<<10, "x@remote.test")
	mustDeliver(t, s, d)
	// The shared body goes missing (a damaged page, a bug).
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketShared) }); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Check(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	copies, queued := 0, 0
	for _, b := range rep.Bad {
		switch {
		case b.UID != 0 && strings.Contains(b.Error, "missing"):
			copies++
		case b.Mailbox == "queue" && strings.Contains(b.Error, "missing"):
			queued++
		}
	}
	if copies != 3 || queued != 1 {
		t.Fatalf("check found %+v: want the three INBOX copies and the queue entry reported", rep.Bad)
	}
	// Repair moves the copies away; what is left are the queue's.
	rep, err = s.Check(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Remaining() != 1 {
		t.Fatalf("after repair %+v: want only the queue entry left", rep.Bad)
	}
	if st := mustMailbox(t, s, sbBob, storage.Inbox); st.Messages != 0 {
		t.Fatalf("bob's INBOX still holds %d messages", st.Messages)
	}
}

func TestCheckReportsAWrongSharedCount(t *testing.T) {
	s, _ := sharedStore(t)
	mustDeliver(t, s, bigDelivery("", 200<<10))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return sharedBucket(tx, bucketSharedRefs).Put(be64(1), be64(7))
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Check(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bad) != 1 || !strings.Contains(rep.Bad[0].Error, "7 references counted, 3 found") {
		t.Fatalf("check found %+v: want the shared body's wrong count", rep.Bad)
	}
}

// A delivery to three local users writes the body once: the store
// allocates about the message's size (bbolt's page buffer for the one
// shared value), not three or four times it.
func TestADeliveryToThreeUsersAllocatesItsBodyOnce(t *testing.T) {
	s, _ := sharedStore(t)
	const size = 8 << 20
	d := bigDelivery(sbAlice, size, "x@remote.test")
	// A first delivery grows the file and the freelist; the second is
	// the one measured.
	mustDeliver(t, s, bigDelivery(sbAlice, size, "x@remote.test"))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	mustDeliver(t, s, d)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB delivery with 5 copies allocated %.1f MiB in the store", size>>20, float64(allocated)/(1<<20))
	if limit := uint64(size * 3 / 2); allocated > limit {
		t.Errorf("a %d-byte delivery to 3 users, Sent and the queue allocated %d bytes (limit %d)", size, allocated, limit)
	}
}

func TestQueueBodyStreamsInChunks(t *testing.T) {
	s, _ := sharedStore(t)
	d := bigDelivery("", 1<<20, "x@remote.test")
	res := mustDeliver(t, s, d)
	w := &chunkWriter{}
	n, err := s.QueueBody(context.Background(), res.QueueID, w)
	if err != nil || n != int64(len(d.RelayCopy.Raw)) {
		t.Fatalf("wrote %d, %v; want %d bytes", n, err, len(d.RelayCopy.Raw))
	}
	if !bytes.Equal(w.buf.Bytes(), d.RelayCopy.Raw) {
		t.Fatal("the streamed body is not the relay copy")
	}
	if w.largest > bodyChunkSize || w.writes < len(d.RelayCopy.Raw)/bodyChunkSize {
		t.Fatalf("%d writes, the largest %d bytes: want chunks of at most %d", w.writes, w.largest, bodyChunkSize)
	}
}

type chunkWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
	largest int
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	w.largest = max(w.largest, len(p))
	return w.buf.Write(p)
}
