package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/internal/testcert"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
	admin = "admin@example.com"
	pass  = "correct horse"
)

type testEnv struct {
	t     testing.TB
	store storage.Store
	web   *Server
	url   string          // https://127.0.0.1:PORT
	tr    *http.Transport // trusts the server's certificate; HTTP/2
}

// newEnv serves the web interface with Serve (HTTPS, HTTP/2, the daemon's
// own server settings) on 127.0.0.1 with alice, bob and admin (an
// administrator) on a real bbolt file.
func newEnv(t testing.TB, mutate func(*Options)) *testEnv {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{alice, bob, admin} {
		if err := st.CreateUser(context.Background(), u, pass, u == admin); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{
		Store:        st,
		Logins:       abuse.NewLogins(abuse.LoginOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}),
		PollInterval: 5 * time.Minute,
		Postmaster:   "postmaster@example.com",
		LivePoll:     200 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	serverTLS, clientTLS := testcert.New(t, "127.0.0.1")
	o.TLSConfig = serverTLS
	if mutate != nil {
		mutate(&o)
	}
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go w.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.Shutdown(ctx)
	})
	tr := &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &testEnv{t: t, store: st, web: w, url: "https://" + l.Addr().String(), tr: tr}
}

// client is one browser: its own cookies, redirects not followed.
type client struct {
	e    *testEnv
	http *http.Client
	csrf string
}

func (e *testEnv) anonymous() *client {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: e.tr, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &client{e: e, http: hc}
}

// signIn signs in through POST /login and fetches the CSRF token.
func (e *testEnv) signIn(address string) *client {
	e.t.Helper()
	c := e.anonymous()
	resp := c.form("/login", url.Values{"address": {address}, "password": {pass}})
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign in as %s: %s", address, resp.Status)
	}
	var s sessionJSON
	c.getJSON("/api/v1/session", &s)
	c.csrf = s.CSRFToken
	return c
}

func (c *client) do(method, path, contentType string, body io.Reader, hdr ...string) *http.Response {
	c.e.t.Helper()
	req, err := http.NewRequest(method, c.e.url+path, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	c.e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (c *client) get(path string, hdr ...string) *http.Response {
	return c.do(http.MethodGet, path, "", nil, hdr...)
}

// form posts a form with the CSRF token (when the client has one).
func (c *client) form(path string, v url.Values) *http.Response {
	if c.csrf != "" && v.Get("csrf") == "" {
		v.Set("csrf", c.csrf)
	}
	return c.do(http.MethodPost, path, "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
}

// sendJSON sends body with the CSRF header (when the client has one).
func (c *client) sendJSON(method, path, body string) *http.Response {
	var hdr []string
	if c.csrf != "" {
		hdr = []string{"X-CSRF-Token", c.csrf}
	}
	return c.do(method, path, "application/json", strings.NewReader(body), hdr...)
}

func (c *client) getJSON(path string, v any) {
	c.e.t.Helper()
	resp := c.get(path)
	if resp.StatusCode != http.StatusOK {
		c.e.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		c.e.t.Fatalf("GET %s: %v", path, err)
	}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// queue submits a message from sender (a user; "" for system mail) to an
// external address and gives its entry the status asked for.
func (e *testEnv) queue(sender, subject, status string) uint64 {
	e.t.Helper()
	from := sender
	source := storage.SourceUser
	if sender == "" {
		from, source = "postmaster@example.com", storage.SourceSystem
	}
	mid := fmt.Sprintf("<%d@example.com>", time.Now().UnixNano())
	raw := fmt.Sprintf("From: %s\r\nTo: <x@remote.test>\r\nSubject: %s\r\nMessage-ID: %s\r\n\r\nHello %s\r\n", from, subject, mid, subject)
	d := &storage.Delivery{
		Sender: sender, From: from, Source: source,
		External: []string{"x@remote.test"}, RelayCopy: &storage.NewMessage{Raw: []byte(raw)},
		Subject: subject, MessageID: mid,
	}
	if sender != "" {
		d.SentCopy = &storage.NewMessage{Raw: []byte(raw)}
	}
	res, err := e.store.Deliver(context.Background(), d)
	if err != nil {
		e.t.Fatal(err)
	}
	if status != storage.QueueOutbox {
		e.setStatus(res.QueueID, status, "")
	}
	return res.QueueID
}

// setStatus records an attempt that left the entry with status, as the
// queue would.
func (e *testEnv) setStatus(id uint64, status, errText string) {
	e.t.Helper()
	en, err := e.store.QueueEntry(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	en.Status, en.Error, en.Attempts = status, errText, en.Attempts+1
	state := map[string]string{storage.QueueFailed: storage.RcptFailed, storage.QueueSent: storage.RcptSent}[status]
	if state == "" {
		state = storage.RcptPending
	}
	for i := range en.Recipients {
		en.Recipients[i].State = state
	}
	if status == storage.QueueSent {
		now := time.Now()
		en.Sent, en.SentOn = true, &now
	}
	if status == storage.QueueHeld {
		en.HeldUntil = time.Now().Add(time.Hour)
	}
	if _, err := e.store.UpdateQueueEntry(context.Background(), storage.QueueUpdate{Entry: en}); err != nil {
		e.t.Fatal(err)
	}
}

// alert puts an alert mail from the postmaster into user's INBOX; extra
// header lines may follow the subject.
func (e *testEnv) alert(user, subject string, extra ...string) {
	e.t.Helper()
	raw := fmt.Sprintf("From: Mail Delivery System <postmaster@example.com>\r\nTo: %s\r\nSubject: %s\r\n%s\r\nSomething happened.\r\n", user, subject, strings.Join(extra, ""))
	if _, err := e.store.Append(context.Background(), user, storage.Inbox, &storage.NewMessage{Raw: []byte(raw)}); err != nil {
		e.t.Fatal(err)
	}
}

// queueIDs lists the IDs a client gets from GET /api/v1/queue?query.
func (c *client) queueIDs(query string) []uint64 {
	c.e.t.Helper()
	var list []storage.QueueEntry
	c.getJSON("/api/v1/queue?"+query, &list)
	ids := []uint64{}
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	return ids
}

// events opens GET /api/v1/events and passes on its event and data lines.
func (c *client) events() <-chan string {
	c.e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c.e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", c.e.url+"/api/v1/events", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		c.e.t.Fatalf("events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, ":") {
		c.e.t.Fatalf("events: first line %q", line)
	}
	lines := make(chan string, 16)
	go func() {
		defer resp.Body.Close()
		defer close(lines)
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(l, "event:") || strings.HasPrefix(l, "data:") {
				lines <- strings.TrimSpace(l)
			}
		}
	}()
	return lines
}

// nextEvent waits (5 s at most) for the next event and its data.
func nextEvent(t *testing.T, lines <-chan string) (name, data string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for data == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if v, ok := strings.CutPrefix(l, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(l, "data: "); ok {
				data = v
			}
		case <-timeout:
			t.Fatal("no event within 5 s")
		}
	}
	return name, data
}
