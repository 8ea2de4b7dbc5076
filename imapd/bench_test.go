package imapd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

const benchMessages = 10_000

// benchMessage is a plain-text message of about size bytes.
func benchMessage(i, size int) []byte {
	head := fmt.Sprintf("From: Bob <bob@example.com>\r\nTo: Alice <alice@example.com>\r\n"+
		"Subject: Benchmark message %d\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n"+
		"Message-ID: <bench-%d@example.com>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n\r\n", i, i)
	line := "The quick brown fox jumps over the lazy dog, again and again.\r\n"
	var sb strings.Builder
	sb.WriteString(head)
	for sb.Len() < size {
		sb.WriteString(line)
	}
	return []byte(sb.String()[:max(size, len(head))])
}

// fillInbox appends n messages concurrently, so that storage's group
// commit shares fsyncs between them.
func fillInbox(b *testing.B, e *testEnv, n, size int) {
	b.Helper()
	fillInboxWith(b, e, n, func(i int) []byte { return benchMessage(i, size) })
}

// fillInboxWith is fillInbox with message i made by raw.
func fillInboxWith(b *testing.B, e *testEnv, n int, raw func(i int) []byte) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				_, err := e.store.Append(context.Background(), alice, "INBOX", &storage.NewMessage{Raw: raw(i)})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("fill INBOX: %v", err)
	default:
	}
}

// benchFetch runs one FETCH 1:* per iteration over loopback and checks
// that every message came back.
func benchFetch(b *testing.B, size int, opts *imap.FetchOptions) {
	e := newTestEnv(b)
	fillInbox(b, e, benchMessages, size)
	c := e.loginSelect(alice, "INBOX", nil)
	iterations := 0
	for b.Loop() {
		cmd := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, opts)
		n := 0
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			if _, err := m.Collect(); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := cmd.Close(); err != nil {
			b.Fatal(err)
		}
		if n != benchMessages {
			b.Fatalf("fetched %d messages, want %d", n, benchMessages)
		}
		iterations++
	}
	b.ReportMetric(float64(iterations*benchMessages)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkFetchEnvelopesAndFlags10k is a client opening a 10,000-message
// folder: FETCH 1:* (ENVELOPE FLAGS). Target: under 0.3 s per op.
func BenchmarkFetchEnvelopesAndFlags10k(b *testing.B) {
	benchFetch(b, 1024, &imap.FetchOptions{Envelope: true, Flags: true})
}

// BenchmarkFetchFullBodies10k downloads 10,000 whole 4 KiB messages:
// FETCH 1:* (BODY.PEEK[]). Target: under 0.5 s per op.
func BenchmarkFetchFullBodies10k(b *testing.B) {
	benchFetch(b, 4096, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
}

// searchBenchWords are the words search benchmark messages are made of;
// none of them contains "needle" or "haystack".
var searchBenchWords = []string{"alpha", "bravo", "charlie", "delta", "echo",
	"foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike",
	"november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"}

// searchBenchMessage is a plain-text message of about 4 KiB, shaped like
// bench/compare's: every 100th has "needle" in its Subject, every 50th
// "haystack" in its body.
func searchBenchMessage(i int) []byte {
	var b strings.Builder
	subject := fmt.Sprintf("%s %s %d", searchBenchWords[i%20], searchBenchWords[(i/20)%20], i)
	if i%100 == 0 {
		subject += " needle"
	}
	fmt.Fprintf(&b, "From: Sender %d <sender%d@bench.test>\r\nTo: Reader <reader@bench.test>\r\n"+
		"Subject: %s\r\nDate: Wed, 01 Jan 2025 00:00:00 +0000\r\nMessage-ID: <search-%d@bench.test>\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n", i%50, i%50, subject, i)
	line := 0
	for n := 0; b.Len() < 4000; n++ {
		w := searchBenchWords[(i*7+n*13)%len(searchBenchWords)]
		if i%50 == 0 && n == 300 {
			w = "Haystack"
		}
		b.WriteString(w)
		line += len(w) + 1
		if line > 70 {
			b.WriteString("\r\n")
			line = 0
		} else {
			b.WriteByte(' ')
		}
	}
	return []byte(b.String())
}

// benchSearch runs one UID SEARCH per iteration over loopback against
// 10,000 messages and checks the number of hits.
func benchSearch(b *testing.B, crit *imap.SearchCriteria, wantHits int) {
	e := newTestEnv(b)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				if _, err := e.store.Append(context.Background(), alice, "INBOX", &storage.NewMessage{Raw: searchBenchMessage(i)}); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range benchMessages {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("fill INBOX: %v", err)
	default:
	}
	c := e.loginSelect(alice, "INBOX", nil)
	for b.Loop() {
		data, err := c.UIDSearch(crit, nil).Wait()
		if err != nil {
			b.Fatal(err)
		}
		if n := len(data.AllUIDs()); n != wantHits {
			b.Fatalf("SEARCH found %d messages, want %d", n, wantHits)
		}
	}
}

// BenchmarkSearchSubject10k is UID SEARCH SUBJECT "needle" over 10,000
// messages of 4 KiB (100 hits).
func BenchmarkSearchSubject10k(b *testing.B) {
	benchSearch(b, &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "needle"}}}, 100)
}

// BenchmarkSearchBody10k is UID SEARCH BODY "haystack" over 10,000
// messages of 4 KiB (200 hits, written "Haystack").
func BenchmarkSearchBody10k(b *testing.B) {
	benchSearch(b, &imap.SearchCriteria{Body: []string{"haystack"}}, 200)
}

// BenchmarkSearchSubjectAndBody10k is bench/compare's query: UID SEARCH
// SUBJECT "needle" BODY "haystack" (100 hits).
func BenchmarkSearchSubjectAndBody10k(b *testing.B) {
	benchSearch(b, &imap.SearchCriteria{
		Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "needle"}},
		Body:   []string{"haystack"},
	}, 100)
}
