package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/smtp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/smtpd"
	"github.com/pochta/pochta/storage"
)

// fillMailbox bulk-loads n small messages into user's mailbox with
// AppendMany, 1,000 per transaction.
func fillMailbox(tb testing.TB, st storage.Store, user, mailbox string, n int) {
	tb.Helper()
	const chunk = 1000
	for done := 0; done < n; done += chunk {
		batch := make([]*storage.NewMessage, 0, chunk)
		for i := done; i < min(done+chunk, n); i++ {
			raw := fmt.Sprintf("From: Bob <bob@example.com>\r\nTo: %s\r\nSubject: message %d of a large folder\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m%d@example.com>\r\n\r\n%s\r\n", user, i, i, strings.Repeat("body text ", 80))
			batch = append(batch, &storage.NewMessage{Raw: []byte(raw)})
		}
		if _, err := st.AppendMany(context.Background(), user, mailbox, batch); err != nil {
			tb.Fatal(err)
		}
	}
}

// timeRequests serves path n times on the handler itself (no network, no
// TLS: the server's own time) and reports the median and 95th percentile.
func timeRequests(b *testing.B, e *testEnv, c *client, path string, want int) {
	b.Helper()
	u, _ := http.NewRequest("GET", e.url+path, nil)
	cookies := c.http.Jar.Cookies(u.URL)
	var times []time.Duration
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("GET", path, nil)
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		e.web.handler.ServeHTTP(rec, req)
		times = append(times, time.Since(start))
		if rec.Code != 200 || strings.Count(rec.Body.String(), `"uid"`) != want {
			b.Fatalf("GET %s: %d, %d messages", path, rec.Code, strings.Count(rec.Body.String(), `"uid"`))
		}
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkFirstPageOf50000 is GET /api/v1/messages?mailbox=INBOX (the
// first page, 50 newest) on a 50,000-message INBOX, server time.
func BenchmarkFirstPageOf50000(b *testing.B) {
	e := newEnv(b, nil)
	fillMailbox(b, e.store, alice, storage.Inbox, 50000)
	c := e.signIn(alice)
	timeRequests(b, e, c, "/api/v1/messages?mailbox=INBOX", defaultPage)
}

// BenchmarkSentFirstPage is the first page of Sent with 2,000 tracked
// messages: not_delivered from the page's own records.
func BenchmarkSentFirstPage(b *testing.B) {
	e := newEnv(b, nil)
	for i := range 2000 {
		e.deliverLocal(alice, fmt.Sprintf("sent %d", i), bob)
	}
	c := e.signIn(alice)
	// What each page used to read besides: every record the user has.
	var full []time.Duration
	for range 50 {
		start := time.Now()
		if list, err := e.store.SentStatus(context.Background(), alice); err != nil || len(list) != 2000 {
			b.Fatalf("sent status: %d records, %v", len(list), err)
		}
		full = append(full, time.Since(start))
	}
	slices.Sort(full)
	timeRequests(b, e, c, "/api/v1/messages?mailbox=Sent", defaultPage)
	b.ReportMetric(float64(full[len(full)/2].Microseconds())/1000, "all-records-p50-ms")
}

// BenchmarkNewMailReachesOpenPage times a message from the SMTP 250 of
// its DATA to its `mail` event arriving on an open GET /api/v1/events
// stream (HTTPS, loopback): what an open /mail page waits. The event is
// published at the commit that precedes the 250, so it may be there before
// the client has read the 250; from-dot also counts the DATA's end and
// the commit.
func BenchmarkNewMailReachesOpenPage(b *testing.B) {
	e := newEnv(b, nil)
	srv, err := smtpd.New(smtpd.Options{Hostname: "mail.example.com", Domains: []string{"example.com"}, Store: e.store,
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.ServeInbound(l)
	defer l.Close()
	c := e.signIn(alice)
	lines := c.events()
	sc, err := smtp.Dial(l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	var times, fromDot []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		subject := fmt.Sprintf("latency %d", i)
		if err := sc.Mail("sender@elsewhere.test"); err != nil {
			b.Fatal(err)
		}
		if err := sc.Rcpt(alice); err != nil {
			b.Fatal(err)
		}
		w, err := sc.Data()
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(w, "From: sender@elsewhere.test\r\nTo: %s\r\nSubject: %s\r\n\r\nhi\r\n", alice, subject)
		dot := time.Now()
		if err := w.Close(); err != nil { // sends the dot, returns on the 250
			b.Fatal(err)
		}
		accepted := time.Now()
		for {
			name, data := nextEventB(b, lines)
			if name == "mail" && strings.Contains(data, subject) {
				break
			}
		}
		times = append(times, time.Since(accepted))
		fromDot = append(fromDot, time.Since(dot))
	}
	b.StopTimer()
	slices.Sort(fromDot)
	b.ReportMetric(float64(fromDot[len(fromDot)/2].Microseconds())/1000, "from-dot-p50-ms")
	b.ReportMetric(float64(fromDot[len(fromDot)*95/100].Microseconds())/1000, "from-dot-p95-ms")
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*95/100].Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
}

func nextEventB(b *testing.B, lines <-chan string) (name, data string) {
	timeout := time.After(5 * time.Second)
	for data == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				b.Fatal("the event stream ended")
			}
			if v, ok := strings.CutPrefix(l, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(l, "data: "); ok {
				data = v
			}
		case <-timeout:
			b.Fatal("no event within 5 s")
		}
	}
	return name, data
}
