package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/storagetest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/imapd/envelope"
)

// testOptions keep bcrypt cheap: the tests are about the store, not about
// bcrypt's cost.
func testOptions() Options {
	return Options{PasswordCost: bcrypt.MinCost}
}

// openTestStore opens a store on a real bbolt file in a temporary directory
// and closes it at the end of the test.
func openTestStore(t testing.TB) (*testStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pochta.db")
	s, err := openTestBolt(path, testOptions())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func reopen(t testing.TB, s *testStore, path string) *testStore {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s2, err := openTestBolt(path, testOptions())
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func mustCreateUser(t testing.TB, s storage.Store, addr string) {
	t.Helper()
	if err := s.CreateUser(context.Background(), addr, "secret", false); err != nil {
		t.Fatalf("create user %s: %v", addr, err)
	}
}

func mustMailbox(t testing.TB, s storage.Store, user, name string) *storage.MailboxStatus {
	t.Helper()
	st, err := s.MailboxStatus(context.Background(), user, name)
	if err != nil {
		t.Fatalf("mailbox %s of %s: %v", name, user, err)
	}
	return st
}

func mustAppend(t testing.TB, s storage.Store, user, mailbox string, raw string, flags ...imap.Flag) *storage.Appended {
	t.Helper()
	a, err := s.Append(context.Background(), user, mailbox, &storage.NewMessage{Raw: []byte(raw), Flags: flags})
	if err != nil {
		t.Fatalf("append to %s of %s: %v", mailbox, user, err)
	}
	return a
}

func mustUIDs(t testing.TB, s storage.Store, user string, id uint64) []imap.UID {
	t.Helper()
	uids, err := s.UIDs(context.Background(), user, id)
	if err != nil {
		t.Fatalf("uids: %v", err)
	}
	return uids
}

func simpleMessage(subject string) string {
	return "From: Alice <alice@example.com>\r\n" +
		"To: Bob <bob@example.com>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0200\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.com>\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Hello " + subject + "\r\n"
}

// sizedMessage is a plain message whose raw size is exactly n bytes.
func sizedMessage(n int) []byte {
	head := simpleMessage("sized")
	if n < len(head) {
		n = len(head)
	}
	b := []byte(head)
	line := strings.Repeat("x", 76) + "\r\n"
	for len(b) < n {
		b = append(b, line...)
	}
	b = b[:n-2]
	return append(b, "\r\n"...)
}

// nestedMessage: the conformance suite's (storagetest.NestedMessage).
const nestedMessage = storagetest.NestedMessage

// listen records s's events (storagetest.EventLog).
func listen(s storage.Store) *storagetest.EventLog { return storagetest.Listen(s) }

// blockWriter occupies the writer goroutine with a request that waits for
// release, so the test can queue requests behind it deterministically. It
// returns once the writer is inside that request.
func blockWriter(t testing.TB, s *testStore) (release func()) {
	t.Helper()
	entered := make(chan struct{})
	gate := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := write(s.boltStore, context.Background(), 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
			close(entered)
			<-gate
			return struct{}{}, nil
		})
		done <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("writer never ran the blocking request")
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(gate)
			if err := <-done; err != nil {
				t.Errorf("blocking request: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// waitQueued waits until n requests wait in the writer's queue.
func waitQueued(t testing.TB, s *testStore, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests queued", len(s.reqs), n)
		}
		runtime.Gosched()
	}
}

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// sameEnvelope compares envelopes, allowing the Date to come back in an
// equivalent *time.Location (same instant, same offset).
func sameEnvelope(a, b *envelope.Envelope) error {
	if a == nil || b == nil {
		if a != b {
			return fmt.Errorf("one envelope is nil: %v vs %v", a, b)
		}
		return nil
	}
	if !a.Date.Equal(b.Date) {
		return fmt.Errorf("date %v vs %v", a.Date, b.Date)
	}
	_, oa := a.Date.Zone()
	_, ob := b.Date.Zone()
	if oa != ob {
		return fmt.Errorf("date offset %d vs %d", oa, ob)
	}
	ac, bc := *a, *b
	ac.Date, bc.Date = time.Time{}, time.Time{}
	if !reflect.DeepEqual(ac, bc) {
		return fmt.Errorf("envelope\n got %#v\nwant %#v", bc, ac)
	}
	return nil
}

// sameBodyStructure compares body structures, comparing envelopes inside
// message/rfc822 parts with sameEnvelope.
func sameBodyStructure(a, b imap.BodyStructure) error {
	switch a := a.(type) {
	case *imap.BodyStructureMultiPart:
		bm, ok := b.(*imap.BodyStructureMultiPart)
		if !ok {
			return fmt.Errorf("multipart vs %T", b)
		}
		if len(a.Children) != len(bm.Children) || (a.Children == nil) != (bm.Children == nil) {
			return fmt.Errorf("children %d vs %d", len(a.Children), len(bm.Children))
		}
		for i := range a.Children {
			if err := sameBodyStructure(a.Children[i], bm.Children[i]); err != nil {
				return fmt.Errorf("part %d: %w", i+1, err)
			}
		}
		ac, bc := *a, *bm
		ac.Children, bc.Children = nil, nil
		if !reflect.DeepEqual(ac, bc) {
			return fmt.Errorf("multipart\n got %#v\nwant %#v", bc, ac)
		}
		return nil
	case *imap.BodyStructureSinglePart:
		bs, ok := b.(*imap.BodyStructureSinglePart)
		if !ok {
			return fmt.Errorf("single part vs %T", b)
		}
		ac, bc := *a, *bs
		if (a.MessageRFC822 == nil) != (bs.MessageRFC822 == nil) {
			return fmt.Errorf("message/rfc822 presence differs")
		}
		if a.MessageRFC822 != nil {
			if err := sameEnvelope(envelope.FromIMAP(a.MessageRFC822.Envelope), envelope.FromIMAP(bs.MessageRFC822.Envelope)); err != nil {
				return fmt.Errorf("rfc822: %w", err)
			}
			if err := sameBodyStructure(a.MessageRFC822.BodyStructure, bs.MessageRFC822.BodyStructure); err != nil {
				return fmt.Errorf("rfc822: %w", err)
			}
			if a.MessageRFC822.NumLines != bs.MessageRFC822.NumLines {
				return fmt.Errorf("rfc822 lines %d vs %d", a.MessageRFC822.NumLines, bs.MessageRFC822.NumLines)
			}
			ac.MessageRFC822, bc.MessageRFC822 = nil, nil
		}
		if !reflect.DeepEqual(ac, bc) {
			return fmt.Errorf("single part\n got %#v\nwant %#v", bc, ac)
		}
		return nil
	case nil:
		if b != nil {
			return fmt.Errorf("nil vs %T", b)
		}
		return nil
	default:
		return fmt.Errorf("unexpected %T", a)
	}
}

// testStore is a bolt store with the rules over its records: the whole
// Store (as New makes it), with the bolt internals still at hand.
type testStore struct {
	*boltStore
	storage.Rules
}

// openTestBolt is openBolt for the tests.
func openTestBolt(path string, opts Options) (*testStore, error) {
	b, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	r, err := storage.NewRules(b, storage.RulesOptions{PasswordCost: opts.PasswordCost})
	if err != nil {
		b.Close()
		return nil, err
	}
	return &testStore{boltStore: b, Rules: r}, nil
}
