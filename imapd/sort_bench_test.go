package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const sortBenchMessages = 50_000

// sortBenchMessage is a message of about 1 KiB whose Date and Subject are
// spread so that neither follows arrival order; two thirds of the
// subjects carry reply markers or a list tag.
func sortBenchMessage(i int) []byte {
	date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration((i*7919)%sortBenchMessages) * time.Minute)
	subject := fmt.Sprintf("%s %s %d", searchBenchWords[(i*13)%20], searchBenchWords[(i/20)%20], i%997)
	switch i % 3 {
	case 1:
		subject = "Re: " + subject
	case 2:
		subject = "[list] Fwd: " + subject
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: Sender %d <sender%d@bench.test>\r\nTo: Reader <reader@bench.test>\r\n"+
		"Subject: %s\r\nDate: %s\r\nMessage-ID: <sort-%d@bench.test>\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n", i%50, i%50, subject, date.Format(time.RFC1123Z), i)
	for b.Len() < 1024 {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again.\r\n")
	}
	return []byte(b.String())
}

// benchSort runs one UID SORT ALL per iteration over loopback against
// 50,000 messages and checks that every message is in the answer (the
// order is TestSortWire's).
// With reselect, each iteration SELECTs the mailbox again first, so the
// keys are read from storage; without, SORT uses the keys it kept.
func benchSort(b *testing.B, key imapclient.SortKey, reselect bool) {
	e := newTestEnv(b)
	fillInboxWith(b, e, sortBenchMessages, sortBenchMessage)
	c := e.loginSelect(alice, "INBOX", nil)
	for b.Loop() {
		if reselect {
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				b.Fatal(err)
			}
		}
		uids, err := c.UIDSort(&imapclient.SortOptions{
			SearchCriteria: &imap.SearchCriteria{},
			SortCriteria:   []imapclient.SortCriterion{{Key: key}},
		}).Wait()
		if err != nil {
			b.Fatal(err)
		}
		if len(uids) != sortBenchMessages {
			b.Fatalf("SORT returned %d messages, want %d", len(uids), sortBenchMessages)
		}
	}
}

// BenchmarkSortDate50k is UID SORT (DATE) US-ASCII ALL over 50,000
// messages, repeated in one session.
func BenchmarkSortDate50k(b *testing.B) { benchSort(b, imapclient.SortKeyDate, false) }

// BenchmarkSortSubject50k is UID SORT (SUBJECT) US-ASCII ALL over 50,000
// messages, repeated in one session.
func BenchmarkSortSubject50k(b *testing.B) { benchSort(b, imapclient.SortKeySubject, false) }

// BenchmarkSortDateFirst50k is SELECT and the first UID SORT (DATE) of
// the session over 50,000 messages.
func BenchmarkSortDateFirst50k(b *testing.B) { benchSort(b, imapclient.SortKeyDate, true) }

// BenchmarkSortSubjectFirst50k is SELECT and the first UID SORT
// (SUBJECT) of the session over 50,000 messages.
func BenchmarkSortSubjectFirst50k(b *testing.B) { benchSort(b, imapclient.SortKeySubject, true) }
