package imapd

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/pochta/pochta/trace"
)

// traceLog is the JSON log a Tracer writes to; tests wait on it for lines.
type traceLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed at the next write
}

func (l *traceLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *traceLog) snapshot() (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String(), l.changed
}

type traceRecord struct {
	Msg, Proto, Session, Remote, User, Dir, Line string
}

func parseTrace(t *testing.T, raw string) []traceRecord {
	t.Helper()
	var out []traceRecord
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
		if line == "" {
			continue
		}
		var r traceRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r.Msg == "protocol trace" {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits until user's trace has a line from dir containing text,
// and returns the whole trace so far.
func (l *traceLog) waitFor(t *testing.T, user, dir, text string) []traceRecord {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		raw, changed := l.snapshot()
		recs := parseTrace(t, raw)
		for _, r := range recs {
			if r.User == user && r.Dir == dir && strings.Contains(r.Line, text) {
				return recs
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %s line with %q traced for %s; trace:\n%s", dir, text, user, raw)
		}
	}
}

// newTracedEnv starts a server whose Tracer traces users.
func newTracedEnv(t *testing.T, users ...string) (*testEnv, *trace.Tracer, *traceLog) {
	t.Helper()
	log := &traceLog{changed: make(chan struct{})}
	tr := trace.New(slog.New(slog.NewJSONHandler(log, nil)))
	tr.Set(users)
	e := newTestEnv(t, func(o *Options) { o.Trace = tr })
	return e, tr, log
}

// wantInOrder checks that the trace has lines containing each of want
// ("C: text" or "S: text"), in this order.
func wantInOrder(t *testing.T, recs []traceRecord, want ...string) {
	t.Helper()
	i := 0
	for _, r := range recs {
		dir, text, _ := strings.Cut(want[min(i, len(want)-1)], ": ")
		if i < len(want) && r.Dir == dir && strings.Contains(r.Line, text) {
			i++
		}
	}
	if i < len(want) {
		var got []string
		for _, r := range recs {
			got = append(got, r.Dir+": "+r.Line)
		}
		t.Fatalf("trace lacks %q (in order); trace:\n%s", want[i], strings.Join(got, "\n"))
	}
}

func wantAbsent(t *testing.T, raw string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(raw, s) {
			t.Fatalf("log holds %q:\n%s", s, raw)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestTracedSessionIsLoggedWithPasswordAndMessagesMasked(t *testing.T) {
	e, _, log := newTracedEnv(t, alice)
	c, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: e.clientTLS})
	if err != nil {
		t.Fatalf("dial STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Login(alice, password).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	raw := testMessage(bob, alice, "trace me", "the secret body text")
	app := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := app.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatalf("append: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select: %v", err)
	}
	fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if err := c.Logout().Wait(); err != nil {
		t.Fatalf("logout: %v", err)
	}

	recs := log.waitFor(t, alice, "S", "OK LOGOUT completed")
	wantInOrder(t, recs,
		"S: * OK", "C: STARTTLS", "S: OK Begin TLS",
		`C: LOGIN "`+alice+`" ***`, "S: OK",
		fmt.Sprintf("C: APPEND INBOX {%d", len(raw)), fmt.Sprintf("C: <message body, %d bytes>", len(raw)), "S: APPEND completed",
		"C: SELECT INBOX", "C: FETCH 1", fmt.Sprintf("S: <literal, %d bytes>", len(raw)),
		"C: LOGOUT", "S: * BYE",
	)
	for _, r := range recs {
		if r.User != alice || r.Proto != "imap" || r.Session != recs[0].Session || r.Remote != "127.0.0.1" {
			t.Fatalf("record %+v, want user %s, proto imap, session %s, remote 127.0.0.1", r, alice, recs[0].Session)
		}
	}
	text, _ := log.snapshot()
	wantAbsent(t, text, password, "the secret body text", "trace me")
}

func TestTracedAuthenticatePlainOnImplicitTLSIsMasked(t *testing.T) {
	e, _, log := newTracedEnv(t, alice)
	c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS})
	if err != nil {
		t.Fatalf("dial TLS: %v", err)
	}
	defer c.Close()
	// go-imap's client sends the response with the command (SASL-IR).
	if err := c.Authenticate(sasl.NewPlainClient("", alice, password)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("noop: %v", err)
	}
	recs := log.waitFor(t, alice, "C", "NOOP")
	wantInOrder(t, recs, "C: AUTHENTICATE PLAIN ***", "S: OK", "C: NOOP")
	text, _ := log.snapshot()
	wantAbsent(t, text, password, b64(password), b64("\x00"+alice+"\x00"+password))
}

func TestTracedLoginWithLiteralPasswordIsMasked(t *testing.T) {
	e, _, log := newTracedEnv(t, alice)
	r := e.raw()
	r.send(fmt.Sprintf("a1 LOGIN %s {%d}", alice, len(password)))
	r.expect("+")
	r.send(password)
	r.expect("a1 OK")
	r.ok("a2 NOOP")
	recs := log.waitFor(t, alice, "S", "a2 OK")
	wantInOrder(t, recs, "S: * OK", fmt.Sprintf("C: a1 LOGIN %s ***", alice), "S: + ", "C: ***", "S: a1 OK", "C: a2 NOOP")
	text, _ := log.snapshot()
	wantAbsent(t, text, password)
}

func TestUntracedSessionLeavesNoTrace(t *testing.T) {
	e, _, log := newTracedEnv(t, alice)
	c := e.loginSelect(bob, "INBOX", nil)
	if err := c.Logout().Wait(); err != nil {
		t.Fatalf("logout: %v", err)
	}
	// The decision was made before LOGIN's OK: nothing of bob's session,
	// before or after login, is written later.
	text, _ := log.snapshot()
	if recs := parseTrace(t, text); len(recs) != 0 {
		t.Fatalf("bob's session was traced: %+v", recs)
	}
}

func TestSetTracesTheNextSessionOfANewlyListedUser(t *testing.T) {
	e, tr, log := newTracedEnv(t, alice)
	tr.Set([]string{bob})
	c := e.login(bob, nil)
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("noop: %v", err)
	}
	wantInOrder(t, log.waitFor(t, bob, "C", "NOOP"), `C: LOGIN "`+bob+`" ***`, "S: OK", "C: NOOP")

	a := e.login(alice, nil)
	if err := a.Logout().Wait(); err != nil {
		t.Fatalf("logout: %v", err)
	}
	text, _ := log.snapshot()
	for _, r := range parseTrace(t, text) {
		if r.User != bob {
			t.Fatalf("%s is no longer traced but was: %+v", r.User, r)
		}
	}
}
