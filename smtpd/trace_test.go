package smtpd

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

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

// waitFor waits until user's trace has a line from dir starting with
// prefix, and returns the whole trace so far.
func (l *traceLog) waitFor(t *testing.T, user, dir, prefix string) []traceRecord {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		raw, changed := l.snapshot()
		recs := parseTrace(t, raw)
		for _, r := range recs {
			if r.User == user && r.Dir == dir && strings.HasPrefix(r.Line, prefix) {
				return recs
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %s line %q traced for %s; trace:\n%s", dir, prefix, user, raw)
		}
	}
}

// startTraced starts a server whose Tracer traces users and logs to the
// returned traceLog.
func startTraced(t *testing.T, users ...string) (*testEnv, *trace.Tracer, *traceLog) {
	t.Helper()
	log := &traceLog{changed: make(chan struct{})}
	tr := trace.New(slog.New(slog.NewJSONHandler(log, nil)))
	tr.Set(users)
	env := startServer(t, func(o *Options) { o.Trace = tr })
	return env, tr, log
}

// wantInOrder checks that the trace has lines starting with each of want
// ("C: prefix" or "S: prefix"), in this order.
func wantInOrder(t *testing.T, recs []traceRecord, want ...string) {
	t.Helper()
	i := 0
	for _, r := range recs {
		if i < len(want) && strings.HasPrefix(r.Dir+": "+r.Line, want[i]) {
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

// wantAbsent checks the raw log for each of secrets.
func wantAbsent(t *testing.T, raw string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(raw, s) {
			t.Fatalf("log holds %q:\n%s", s, raw)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestTracedUserSessionIsLoggedWithCredentialsAndBodyMasked(t *testing.T) {
	env, _, log := startTraced(t, alice)
	c := env.login(t, alice) // STARTTLS, then AUTH PLAIN
	body := "Subject: trace me\r\n\r\nthe secret body text\r\n"
	if err := send(c, alice, []string{bob}, body); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	recs := log.waitFor(t, alice, "S", "221")
	wantInOrder(t, recs,
		"S: 220 ", "C: EHLO", "C: STARTTLS", "S: 220 2.0.0 Ready to start TLS",
		"C: EHLO", "C: AUTH PLAIN ***", "S: 235",
		"C: MAIL FROM:<"+alice+">", "C: RCPT TO:<"+bob+">", "C: DATA", "S: 354",
		"C: <message body, ", "C: .", "S: 250", "C: QUIT", "S: 221",
	)
	for _, r := range recs {
		if r.User != alice || r.Proto != "smtp" || r.Session != recs[0].Session || r.Remote != "127.0.0.1" {
			t.Fatalf("record %+v, want user %s, proto smtp, session %s, remote 127.0.0.1", r, alice, recs[0].Session)
		}
	}
	raw, _ := log.snapshot()
	wantAbsent(t, raw, testPassword, b64(testPassword), b64("\x00"+alice+"\x00"+testPassword),
		"the secret body text", "trace me")
}

func TestTracedAuthLoginOnImplicitTLSIsMasked(t *testing.T) {
	env, _, log := startTraced(t, alice)
	r := dialRaw(t, env.submissions, env.clientTLS)
	r.cmd(t, "EHLO phone.example.test")
	r.cmd(t, "AUTH LOGIN")
	r.cmd(t, b64(alice))
	if code, msg := r.cmd(t, b64(testPassword)); code != 235 {
		t.Fatalf("AUTH LOGIN: %d %s", code, msg)
	}
	r.cmd(t, "QUIT")
	recs := log.waitFor(t, alice, "S", "221")
	wantInOrder(t, recs,
		"S: 220 ", "C: EHLO phone.example.test", "C: AUTH LOGIN", "S: 334 ", "C: ***", "S: 334 ", "C: ***",
		"S: 235", "C: QUIT", "S: 221")
	raw, _ := log.snapshot()
	wantAbsent(t, raw, testPassword, b64(testPassword), b64(alice))
}

func TestUntracedUserSessionLeavesNoTrace(t *testing.T) {
	env, _, log := startTraced(t, alice)
	c := env.login(t, bob)
	if err := send(c, bob, []string{alice}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	// Shutdown returns once every connection is over, so every line the
	// session could have traced has been written.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	raw, _ := log.snapshot()
	if recs := parseTrace(t, raw); len(recs) != 0 {
		t.Fatalf("bob's session was traced: %+v", recs)
	}
}

func TestSetTracesTheNextSessionOfANewlyListedUser(t *testing.T) {
	env, tr, log := startTraced(t, alice)
	tr.Set([]string{bob})
	c := env.login(t, bob)
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	wantInOrder(t, log.waitFor(t, bob, "S", "221"), "C: EHLO", "C: AUTH PLAIN ***", "S: 235", "C: QUIT")

	a := env.login(t, alice)
	if err := a.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	raw, _ := log.snapshot()
	for _, r := range parseTrace(t, raw) {
		if r.User != bob {
			t.Fatalf("%s is no longer traced but was: %+v", r.User, r)
		}
	}
}

// A traced user whose password is refused is traced too: that is the
// trouble the trace is for.
func TestFailedLoginOfTracedUserIsTraced(t *testing.T) {
	env, _, log := startTraced(t, alice)
	c := env.dialStartTLS(t)
	if err := c.Auth(sasl.NewPlainClient("", alice, "wrong password")); err == nil {
		t.Fatal("AUTH with a wrong password succeeded")
	}
	wantInOrder(t, log.waitFor(t, alice, "S", "535"), "C: STARTTLS", "C: AUTH PLAIN ***", "S: 535")
	raw, _ := log.snapshot()
	wantAbsent(t, raw, "wrong password", b64("\x00"+alice+"\x00wrong password"))
}
