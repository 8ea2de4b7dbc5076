package boltstore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// fill appends n copies of raw to a mailbox, thousands per transaction, to
// set up large mailboxes quickly.
func fill(tb testing.TB, s *testStore, user, mailbox string, n int, raw []byte) {
	tb.Helper()
	p, err := prepare(&storage.NewMessage{Raw: raw}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	const chunk = 5000
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		_, err := write(s.boltStore, context.Background(), 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
			u, err := openUser(tx, user)
			if err != nil {
				return struct{}{}, err
			}
			x, err := u.boxByName(mailbox)
			if err != nil {
				return struct{}{}, err
			}
			for range k {
				if _, err := x.appendPrepared(p, ev); err != nil {
					return struct{}{}, err
				}
			}
			return struct{}{}, x.save()
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// benchDeliver delivers a 4 KiB message from alice to bob (Sent copy plus
// INBOX copy, one transaction) from 32 goroutines.
func benchDeliver(b *testing.B, s *testStore) {
	msg := sizedMessage(4096)
	d := &storage.Delivery{
		Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: msg},
		Recipients: []string{"bob@example.com"}, Copy: &storage.NewMessage{Raw: msg},
	}
	txBefore := s.txCount.Load()
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Deliver(context.Background(), d); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/float64(max(1, s.txCount.Load()-txBefore)), "msgs/tx")
}

func benchStore(b *testing.B) *testStore {
	s, _ := openTestStore(b)
	mustCreateUser(b, s, "alice@example.com")
	mustCreateUser(b, s, "bob@example.com")
	return s
}

// BenchmarkDeliverParallel: 32 concurrent submitters, fsync on, 4 KiB.
func BenchmarkDeliverParallel(b *testing.B) {
	benchDeliver(b, benchStore(b))
}

// BenchmarkDeliverIntoLargeMailbox shows that delivery cost does not grow
// with the mailbox: compare "empty" with "50000".
func BenchmarkDeliverIntoLargeMailbox(b *testing.B) {
	for _, n := range []int{0, 50000} {
		name := fmt.Sprint(n)
		if n == 0 {
			name = "empty"
		}
		b.Run(name, func(b *testing.B) {
			s := benchStore(b)
			fill(b, s, "bob@example.com", storage.Inbox, n, sizedMessage(4096))
			fill(b, s, "alice@example.com", storage.Sent, n, sizedMessage(4096))
			benchDeliver(b, s)
		})
	}
}

// BenchmarkMessagesEnvelope10k loads flags, dates, sizes and envelopes of
// 10,000 messages in one call, as FETCH 1:* (FLAGS ENVELOPE) needs. The
// target is well under 0.2 s per operation.
func BenchmarkMessagesEnvelope10k(b *testing.B) {
	s := benchStore(b)
	fill(b, s, "bob@example.com", storage.Inbox, 10000, []byte(nestedMessage))
	ctx := context.Background()
	id := mustMailbox(b, s, "bob@example.com", storage.Inbox).ID
	b.ResetTimer()
	for b.Loop() {
		uids, err := s.UIDs(ctx, "bob@example.com", id)
		if err != nil {
			b.Fatal(err)
		}
		msgs, err := s.Messages(ctx, "bob@example.com", id, uids, storage.LoadOptions{Envelope: true})
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) != 10000 || msgs[9999].Envelope == nil {
			b.Fatalf("loaded %d messages", len(msgs))
		}
	}
}

// BenchmarkMessagesBody10k loads 10,000 full 4 KiB bodies in chunks of 500,
// as FETCH 1:* BODY[] does.
func BenchmarkMessagesBody10k(b *testing.B) {
	s := benchStore(b)
	fill(b, s, "bob@example.com", storage.Inbox, 10000, sizedMessage(4096))
	ctx := context.Background()
	id := mustMailbox(b, s, "bob@example.com", storage.Inbox).ID
	b.ResetTimer()
	for b.Loop() {
		uids, err := s.UIDs(ctx, "bob@example.com", id)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(uids); i += 500 {
			chunk := uids[i:min(i+500, len(uids))]
			msgs, err := s.Messages(ctx, "bob@example.com", id, chunk, storage.LoadOptions{Body: true})
			if err != nil {
				b.Fatal(err)
			}
			if len(msgs) != len(chunk) {
				b.Fatalf("loaded %d of %d", len(msgs), len(chunk))
			}
		}
	}
}

// BenchmarkStoreFlagsInLargeMailbox: one flag change in a mailbox of 50,000.
func BenchmarkStoreFlagsInLargeMailbox(b *testing.B) {
	s := benchStore(b)
	fill(b, s, "bob@example.com", storage.Inbox, 50000, sizedMessage(1024))
	ctx := context.Background()
	id := mustMailbox(b, s, "bob@example.com", storage.Inbox).ID
	ops := []imap.StoreFlagsOp{imap.StoreFlagsAdd, imap.StoreFlagsDel}
	i := 0
	b.ResetTimer()
	for b.Loop() {
		uid := imap.UID(1 + (i/2)%50000)
		if _, err := s.StoreFlags(ctx, "bob@example.com", id, []imap.UID{uid}, ops[i%2], []imap.Flag{imap.FlagSeen}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkNewestPageOf50k is the web list's first page of a 50,000-message
// INBOX: the 50 newest UIDs (UIDsBefore) and their envelopes; compare the
// "whole" case, which lists every UID first as IMAP does.
func BenchmarkNewestPageOf50k(b *testing.B) {
	s := benchStore(b)
	fill(b, s, "bob@example.com", storage.Inbox, 50000, []byte(nestedMessage))
	ctx := context.Background()
	id := mustMailbox(b, s, "bob@example.com", storage.Inbox).ID
	for _, whole := range []bool{false, true} {
		name := map[bool]string{false: "page", true: "whole"}[whole]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				var uids []imap.UID
				var err error
				if whole {
					all, e := s.UIDs(ctx, "bob@example.com", id)
					err = e
					uids = append(uids, all[len(all)-50:]...)
				} else {
					uids, err = s.UIDsBefore(ctx, "bob@example.com", id, 0, 50)
				}
				if err != nil {
					b.Fatal(err)
				}
				msgs, err := s.Messages(ctx, "bob@example.com", id, uids, storage.LoadOptions{Envelope: true})
				if err != nil || len(msgs) != 50 {
					b.Fatalf("loaded %d messages: %v", len(msgs), err)
				}
			}
		})
	}
}
