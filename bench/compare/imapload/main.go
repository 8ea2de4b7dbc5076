// Command imapload loads an IMAP server with a fixed set of messages and
// times what a mail client does with them. It is the IMAP half of
// bench/compare/run.sh, which runs it with the same flags against Dovecot
// and against pochta:
//
//   - -append N APPENDs the same N messages (generated from a fixed seed,
//     about 4 KiB each; every 100th has "needle" in its Subject, every 50th
//     "haystack" in its body) over -conns connections into -mailbox
//     (created first unless it is INBOX);
//   - then, -runs times each, FETCH 1:* (ENVELOPE FLAGS UID), FETCH 1:*
//     (UID BODY.PEEK[]) reading every body to the end, UID SEARCH SUBJECT
//     "needle", UID SEARCH BODY "haystack", both criteria at once, and
//     UID SORT (DATE) ALL and UID SORT (SUBJECT) ALL;
//   - then, -runs times, a QRESYNC resync (RFC 7162): a client that saw the
//     mailbox at some HIGHESTMODSEQ comes back after another session has
//     changed the flags of 100 messages spread over it, and sends SELECT
//     mailbox (QRESYNC (uidvalidity modseq)); the time to the tagged OK is
//     measured, and the FETCH responses it received are counted (100 on a
//     server that sends only the changes).
//
// -maildir DIR fills a Dovecot Maildir folder directly with the same
// messages instead of APPENDing them (files in DIR/cur, mtime = the
// message's Date), for mailboxes too big to APPEND to Dovecot in
// reasonable time; Dovecot indexes them at the first SELECT, which the
// "first run" FETCH figure then includes.
//
// It prints one JSON line: the message count the server reports, the
// search hit count (the same on both servers, or the comparison means
// nothing), and the median of the runs in milliseconds. Only loopback
// addresses are dialled; every phase stops after -limit.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

type result struct {
	Target         string  `json:"target"`
	Messages       uint32  `json:"messages"`
	AppendSeconds  float64 `json:"append_seconds,omitempty"`
	AppendRate     float64 `json:"append_per_sec,omitempty"`
	EnvelopeMs     float64 `json:"fetch_envelope_ms"`
	EnvelopeFirst  float64 `json:"fetch_envelope_first_ms"`
	BodyMs         float64 `json:"fetch_body_ms"`
	BodyBytes      int64   `json:"fetch_body_bytes"`
	SearchMs       float64 `json:"search_ms"`
	SearchHits     int     `json:"search_hits"`
	SubjectMs      float64 `json:"search_subject_ms"`
	SubjectHits    int     `json:"search_subject_hits"`
	BodySearchMs   float64 `json:"search_body_ms"`
	BodyHits       int     `json:"search_body_hits"`
	SortDateMs     float64 `json:"sort_date_ms"`
	SortSubjectMs  float64 `json:"sort_subject_ms"`
	Sorted         int     `json:"sorted"`
	QResyncMs      float64 `json:"qresync_ms"`
	QResyncFetched int     `json:"qresync_fetched"`
	Filled         string  `json:"filled"`
	Round          int     `json:"round,omitempty"`
	Mailbox        string  `json:"mailbox"`
	EnvelopesCount int     `json:"envelopes"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:2143", "IMAP server host:port (loopback, no TLS)")
	target := flag.String("target", "", "name printed in the result")
	user := flag.String("user", "reader@bench.test", "login")
	pass := flag.String("pass", "", "password")
	appendN := flag.Int("append", 0, "APPEND this many messages to INBOX first")
	conns := flag.Int("conns", 8, "connections for APPEND")
	runs := flag.Int("runs", 3, "times each query is run (the median is printed)")
	limit := flag.Duration("limit", 5*time.Minute, "bound on each phase")
	mailbox := flag.String("mailbox", "INBOX", "mailbox to APPEND to and query")
	round := flag.Int("round", 0, "round number printed in the result")
	maildir := flag.String("maildir", "", "with -append: write the messages into this Maildir folder instead of APPENDing")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") && !strings.HasPrefix(*addr, "[::1]:") {
		fmt.Fprintln(os.Stderr, "imapload: only loopback addresses are allowed")
		os.Exit(2)
	}
	r := &result{Target: *target, Round: *round, Mailbox: *mailbox, Filled: "append"}
	if *maildir != "" {
		r.Filled = "maildir"
	}
	if err := run(r, *addr, *user, *pass, *maildir, *appendN, *conns, *runs, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "imapload:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

var words = strings.Fields(`mail server message report meeting project budget invoice schedule
review draft update please thanks regards team office quarter plan notes agenda summary client
contract delivery order payment account travel hotel flight lunch call monday friday weekly`)

// message i is the same bytes on every run and every server.
func message(i int) []byte {
	rng := rand.New(rand.NewPCG(uint64(i), 42))
	var b bytes.Buffer
	subject := fmt.Sprintf("%s %s %d", words[rng.IntN(len(words))], words[rng.IntN(len(words))], i)
	if i%100 == 0 {
		subject += " needle"
	}
	date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	fmt.Fprintf(&b, "From: Sender %d <sender%d@bench.test>\r\nTo: Reader <reader@bench.test>\r\n"+
		"Subject: %s\r\nDate: %s\r\nMessage-ID: <imapload-%d@bench.test>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		i%50, i%50, subject, date.Format(time.RFC1123Z), i)
	line := 0
	for b.Len() < 4000 {
		w := words[rng.IntN(len(words))]
		if i%50 == 0 && b.Len() > 2000 && !bytes.Contains(b.Bytes(), []byte("haystack")) {
			w = "haystack"
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
	b.WriteString("\r\n")
	return b.Bytes()
}

func login(addr, user, pass string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login: %w", err)
	}
	return c, nil
}

func appendAll(addr, user, pass, mailbox string, n, conns int, limit time.Duration) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	cutoff := time.Now().Add(limit)
	start := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(err error) {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
			cl, err := login(addr, user, pass)
			if err != nil {
				fail(err)
				return
			}
			defer cl.Close()
			for time.Now().Before(cutoff) {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				msg := message(i)
				cmd := cl.Append(mailbox, int64(len(msg)), nil)
				if _, err := cmd.Write(msg); err != nil {
					fail(err)
					return
				}
				if err := cmd.Close(); err != nil {
					fail(err)
					return
				}
				if _, err := cmd.Wait(); err != nil {
					fail(fmt.Errorf("APPEND %d: %w", i, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && next.Load() < int64(n) {
		first = fmt.Errorf("APPEND stopped after %s at %d of %d messages", limit, next.Load(), n)
	}
	return time.Since(start), first
}

// fetchAll runs FETCH 1:* and consumes every item, reading body literals to
// the end; it returns the message count and the body bytes read.
func fetchAll(c *imapclient.Client, opts *imap.FetchOptions) (int, int64, error) {
	var all imap.SeqSet
	all.AddRange(1, 0)
	cmd := c.Fetch(all, opts)
	n, bytesRead := 0, int64(0)
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		n++
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok {
				k, err := io.Copy(io.Discard, body.Literal)
				if err != nil {
					return n, bytesRead, err
				}
				bytesRead += k
			}
		}
	}
	return n, bytesRead, cmd.Close()
}

func median(d []time.Duration) float64 {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2].Microseconds()) / 1000
}

func run(r *result, addr, user, pass, maildir string, appendN, conns, runs int, limit time.Duration) error {
	if !strings.EqualFold(r.Mailbox, "INBOX") {
		c, err := login(addr, user, pass)
		if err != nil {
			return err
		}
		err = c.Create(r.Mailbox, nil).Wait()
		c.Close()
		if err != nil {
			return fmt.Errorf("CREATE %s: %w", r.Mailbox, err)
		}
	}
	if appendN > 0 && maildir != "" {
		if err := fillMaildir(maildir, appendN); err != nil {
			return err
		}
	} else if appendN > 0 {
		t, err := appendAll(addr, user, pass, r.Mailbox, appendN, conns, limit)
		if err != nil {
			return err
		}
		r.AppendSeconds = t.Seconds()
		r.AppendRate = float64(appendN) / t.Seconds()
	}
	c, err := login(addr, user, pass)
	if err != nil {
		return err
	}
	defer c.Close()
	sel, err := c.Select(r.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("SELECT: %w", err)
	}
	r.Messages = sel.NumMessages
	var env, body, search, subject, bodySearch []time.Duration
	uidSearch := func(what string, crit *imap.SearchCriteria, times *[]time.Duration, hits *int) error {
		t0 := time.Now()
		sd, err := c.UIDSearch(crit, nil).Wait()
		if err != nil {
			return fmt.Errorf("SEARCH %s: %w", what, err)
		}
		*times = append(*times, time.Since(t0))
		*hits = len(sd.AllUIDs())
		return nil
	}
	var sortDate, sortSubject []time.Duration
	uidSort := func(key imapclient.SortKey, times *[]time.Duration, n *int) error {
		t0 := time.Now()
		uids, err := c.UIDSort(&imapclient.SortOptions{
			SearchCriteria: &imap.SearchCriteria{},
			SortCriteria:   []imapclient.SortCriterion{{Key: key}},
		}).Wait()
		if err != nil {
			return fmt.Errorf("SORT %s: %w", key, err)
		}
		*times = append(*times, time.Since(t0))
		*n = len(uids)
		return nil
	}
	needle := []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "needle"}}
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		n, _, err := fetchAll(c, &imap.FetchOptions{Envelope: true, Flags: true, UID: true})
		if err != nil {
			return fmt.Errorf("FETCH ENVELOPE: %w", err)
		}
		env = append(env, time.Since(t0))
		r.EnvelopesCount = n

		t0 = time.Now()
		_, k, err := fetchAll(c, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		if err != nil {
			return fmt.Errorf("FETCH BODY.PEEK[]: %w", err)
		}
		body = append(body, time.Since(t0))
		r.BodyBytes = k

		if err := uidSearch("SUBJECT", &imap.SearchCriteria{Header: needle}, &subject, &r.SubjectHits); err != nil {
			return err
		}
		if err := uidSearch("BODY", &imap.SearchCriteria{Body: []string{"haystack"}}, &bodySearch, &r.BodyHits); err != nil {
			return err
		}
		if err := uidSearch("SUBJECT BODY", &imap.SearchCriteria{Header: needle, Body: []string{"haystack"}}, &search, &r.SearchHits); err != nil {
			return err
		}
		if err := uidSort(imapclient.SortKeyDate, &sortDate, &r.Sorted); err != nil {
			return err
		}
		if err := uidSort(imapclient.SortKeySubject, &sortSubject, &r.Sorted); err != nil {
			return err
		}
	}
	r.EnvelopeFirst = float64(env[0].Microseconds()) / 1000
	r.EnvelopeMs, r.BodyMs, r.SearchMs = median(env), median(body), median(search)
	r.SubjectMs, r.BodySearchMs = median(subject), median(bodySearch)
	r.SortDateMs, r.SortSubjectMs = median(sortDate), median(sortSubject)

	var resync []time.Duration
	for i := 0; i < runs; i++ {
		d, n, err := qresync(addr, user, pass, r.Mailbox, int(r.Messages), i%2 == 0)
		if err != nil {
			return fmt.Errorf("QRESYNC: %w", err)
		}
		resync = append(resync, d)
		r.QResyncFetched = n
	}
	r.QResyncMs = median(resync)
	return nil
}
