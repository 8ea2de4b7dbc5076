package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
)

// twoNodes opens two stores (two pochta nodes) on one fresh database.
func twoNodes(t *testing.T, users ...string) (a, b storage.Store) {
	t.Helper()
	a, b, _ = twoNodesAt(t, users...)
	return a, b
}

// twoNodesAt is twoNodes, also returning the database's URL.
func twoNodesAt(t *testing.T, users ...string) (a, b storage.Store, dsn string) {
	t.Helper()
	be := postgresBackend()
	dsn = pgtest.New(t)
	a, b = be.Open(t, dsn), be.Open(t, dsn)
	for _, u := range users {
		if err := a.CreateUser(context.Background(), u, "secret", false); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, dsn
}

func message(subject string) []byte {
	return []byte("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.com>\r\n\r\nHello, " + subject + "\r\n")
}

// Two nodes delivering into one INBOX at once: every delivery gets its
// own UID, the counters count every copy, and the Sent copies' read
// tracking follows each one.
func TestTwoNodesDeliverIntoOneMailbox(t *testing.T) {
	a, b := twoNodes(t, "alice@example.com", "bob@example.com")
	ctx := context.Background()
	const each = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	var mu sync.Mutex
	var uids []uint32
	for n, s := range []storage.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				subj := fmt.Sprintf("n%d-%d", n, i)
				res, err := s.Deliver(ctx, &storage.Delivery{
					Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: message(subj)},
					Recipients: []string{"bob@example.com"}, Copy: &storage.NewMessage{Raw: message(subj)},
					From: "alice@example.com", Source: storage.SourceUser, MessageID: "<" + subj + "@example.com>", Subject: subj,
				})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				uids = append(uids, uint32(res.Copies["bob@example.com"].UID))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(uids)
	if len(slices.Compact(slices.Clone(uids))) != 2*each {
		t.Fatalf("UIDs %v: not %d distinct ones", uids, 2*each)
	}
	for _, s := range []storage.Store{a, b} {
		st, err := s.MailboxStatus(ctx, "bob@example.com", storage.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		if st.Messages != 2*each || st.Unseen != 2*each || st.UIDNext != 2*each+1 {
			t.Errorf("bob's INBOX %+v, want %d messages, all unseen, UIDNEXT %d", st, 2*each, 2*each+1)
		}
		sent, err := s.SentStatus(ctx, "alice@example.com")
		if err != nil || len(sent) != 2*each {
			t.Fatalf("alice's sent status: %d records (%v), want %d", len(sent), err, 2*each)
		}
	}
}

// Two nodes claiming the entries of one day at once never count past the
// daily limit between them, and the limit's alert goes out once.
func TestTwoNodesShareTheDailyLimit(t *testing.T) {
	a, b := twoNodes(t, "alice@example.com", "admin@example.com")
	ctx := context.Background()
	const entries, limit = 12, 5
	var ids []uint64
	for i := range entries {
		subj := fmt.Sprintf("q%d", i)
		res, err := a.Deliver(ctx, &storage.Delivery{
			Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: message(subj)},
			From: "alice@example.com", Source: storage.SourceUser, External: []string{"x@remote.test"},
			RelayCopy: &storage.NewMessage{Raw: message(subj)}, MessageID: "<" + subj + "@example.com>", Subject: subj,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.QueueID)
	}
	now := time.Now()
	alert := &storage.Notice{Recipients: []string{"admin@example.com"}, Message: &storage.NewMessage{
		Raw: []byte("From: pochta@example.com\r\nTo: admin@example.com\r\nSubject: Daily system e-mail limit reached\r\n\r\nHeld.\r\n")}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	counted, alerted := 0, 0
	errs := make(chan error, entries)
	for i, id := range ids {
		s, owner := a, "node-a"
		if i%2 == 1 {
			s, owner = b, "node-b"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.ClaimQueueEntry(ctx, storage.QueueClaim{ID: id, Now: now, Day: "2030-01-01", HoldUntil: now.Add(time.Hour),
				SystemLimit: limit, SystemAlert: alert, Owner: owner, LeaseUntil: now.Add(time.Minute)})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if r.Counted {
				counted++
			}
			if r.Alerted {
				alerted++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sys, _, err := b.QueueDayCount(ctx, "2030-01-01", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if counted != limit || sys != limit || alerted != 1 {
		t.Errorf("%d claims counted, day count %d, %d alerts; want %d, %d and 1", counted, sys, alerted, limit, limit)
	}
	if st, err := a.MailboxStatus(ctx, "admin@example.com", storage.Inbox); err != nil || st.Messages != 1 {
		t.Errorf("the admin's INBOX %+v (%v): want the one alert", st, err)
	}
}
