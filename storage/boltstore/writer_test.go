package boltstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

func TestConcurrentDeliveriesShareTransactions(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	msg := sizedMessage(4096)

	release := blockWriter(t, s)
	before := s.txCount.Load()
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Deliver(ctx, &storage.Delivery{
				Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: msg},
				Recipients: []string{"bob@example.com"}, Copy: &storage.NewMessage{Raw: msg},
			})
			errs <- err
		}()
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The blocking request's own transaction was counted before; 64
	// deliveries queued together fit in one batch.
	if used := s.txCount.Load() - before; used >= n || used == 0 {
		t.Errorf("%d deliveries used %d transactions", n, used)
	}
	if st := mustMailbox(t, s, "bob@example.com", storage.Inbox); st.Messages != n {
		t.Errorf("bob has %d messages, want %d", st.Messages, n)
	}
}

func TestOneFailingRequestDoesNotFailItsBatch(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	if err := s.CreateMailbox(ctx, user, "Exists"); err != nil {
		t.Fatal(err)
	}
	events := listen(s)

	release := blockWriter(t, s)
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 4)
	run := func(name string, fn func() error) {
		go func() { results <- result{name, fn()} }()
	}
	run("append 1", func() error {
		_, err := s.Append(ctx, user, storage.Inbox, &storage.NewMessage{Raw: []byte(simpleMessage("1"))})
		return err
	})
	waitQueued(t, s, 1)
	run("create existing", func() error { return s.CreateMailbox(ctx, user, "Exists") })
	waitQueued(t, s, 2)
	run("create new", func() error { return s.CreateMailbox(ctx, user, "New") })
	waitQueued(t, s, 3)
	run("append 2", func() error {
		_, err := s.Append(ctx, user, storage.Inbox, &storage.NewMessage{Raw: []byte(simpleMessage("2"))})
		return err
	})
	waitQueued(t, s, 4)
	release()
	for range 4 {
		r := <-results
		if r.name == "create existing" {
			wantErr(t, r.err, storage.ErrExists, r.name)
		} else if r.err != nil {
			t.Errorf("%s failed with its batch: %v", r.name, r.err)
		}
	}
	if st := mustMailbox(t, s, user, storage.Inbox); st.Messages != 2 {
		t.Errorf("INBOX has %d messages, want 2", st.Messages)
	}
	mustMailbox(t, s, user, "New")
	// Events of the rolled-back attempt are not published; each committed
	// change is published once, in the order the requests were queued.
	var got []string
	for _, ev := range events.Snapshot() {
		got = append(got, fmt.Sprintf("%d/%d", ev.Kind, ev.UID))
	}
	want := fmt.Sprint([]string{
		fmt.Sprintf("%d/1", storage.EventAppend), fmt.Sprintf("%d/0", storage.EventMailboxes), fmt.Sprintf("%d/2", storage.EventAppend),
	})
	if fmt.Sprint(got) != want {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestCancelledWhileQueuedIsNotWritten(t *testing.T) {
	s, _ := openTestStore(t)
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	release := blockWriter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, user, storage.Inbox, &storage.NewMessage{Raw: []byte(simpleMessage("late"))})
		done <- err
	}()
	waitQueued(t, s, 1)
	cancel()
	release()
	wantErr(t, <-done, context.Canceled, "cancelled append")
	if st := mustMailbox(t, s, user, storage.Inbox); st.Messages != 0 {
		t.Errorf("a cancelled append was stored: %+v", st)
	}
}

func TestCloseFinishesQueuedWrites(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(t, s, user)
	release := blockWriter(t, s)
	const n = 10
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Append(ctx, user, storage.Inbox, &storage.NewMessage{Raw: []byte(simpleMessage(fmt.Sprint(i)))})
			errs <- err
		}()
	}
	waitQueued(t, s, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("queued append: %v", err)
		}
	}
	_, err := s.Append(ctx, user, storage.Inbox, &storage.NewMessage{Raw: []byte("x")})
	wantErr(t, err, storage.ErrClosed, "append after close")
	s2, err := openTestBolt(path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if st := mustMailbox(t, s2, user, storage.Inbox); st.Messages != n {
		t.Errorf("%d messages after close, want %d", st.Messages, n)
	}
}

func TestPanickingListenerDoesNotStopTheWriter(t *testing.T) {
	s, _ := openTestStore(t)
	mustCreateUser(t, s, "alice@example.com")
	s.Listen(func(storage.Event) { panic("listener bug") })
	events := listen(s)
	mustAppend(t, s, "alice@example.com", storage.Inbox, simpleMessage("1"))
	mustAppend(t, s, "alice@example.com", storage.Inbox, simpleMessage("2"))
	if n := len(events.Snapshot()); n != 2 {
		t.Errorf("second listener got %d events, want 2", n)
	}
}

func TestPanickingRequestFailsAlone(t *testing.T) {
	s, _ := openTestStore(t)
	mustCreateUser(t, s, "alice@example.com")
	_, err := write(s.boltStore, context.Background(), 0, func(*bolt.Tx, *eventList) (int, error) { panic("bug") })
	if err == nil || errors.Is(err, storage.ErrClosed) {
		t.Fatalf("panicking request: %v", err)
	}
	mustAppend(t, s, "alice@example.com", storage.Inbox, simpleMessage("still works"))
}
