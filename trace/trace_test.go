package trace

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

const (
	traced   = "alice@example.com"
	password = "s3cret pass"
)

// logBuffer is a JSON log the tests read back; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the traced lines as "C: text" / "S: text".
func (b *logBuffer) lines(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, raw := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if raw == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		if rec["msg"] != "protocol trace" {
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s", rec["dir"], rec["line"]))
	}
	return out
}

func newTestTracer(users ...string) (*Tracer, *logBuffer) {
	var buf logBuffer
	tr := New(slog.New(slog.NewJSONHandler(&buf, nil)))
	tr.Set(users)
	return tr, &buf
}

// client feeds bytes to s the way the protocol libraries do for what they
// read (io.TeeReader), server for what they write (io.MultiWriter).
func client(t *testing.T, s *Session, data string) {
	t.Helper()
	if _, err := io.Copy(io.Discard, io.TeeReader(strings.NewReader(data), s)); err != nil {
		t.Fatal(err)
	}
}

func server(t *testing.T, s *Session, data string) {
	t.Helper()
	if _, err := io.MultiWriter(io.Discard, s).Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
}

// exchange is one side's bytes in a scripted conversation.
type exchange struct {
	dir  string // "C" or "S"
	data string
}

func run(t *testing.T, proto Protocol, script []exchange) (got []string, raw string) {
	t.Helper()
	tr, buf := newTestTracer(traced)
	s := tr.Session(proto, "192.0.2.1")
	s.LoggedIn(traced)
	for _, e := range script {
		if e.dir == "C" {
			client(t, s, e.data)
		} else {
			server(t, s, e.data)
		}
	}
	return buf.lines(t), buf.String()
}

func wantLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("traced lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// wantNoSecret fails if the raw log holds the password, also base64-encoded
// on its own or inside a SASL PLAIN response.
func wantNoSecret(t *testing.T, raw string, secrets ...string) {
	t.Helper()
	secrets = append(secrets, password,
		base64.StdEncoding.EncodeToString([]byte(password)),
		base64.StdEncoding.EncodeToString([]byte("\x00"+traced+"\x00"+password)),
		base64.StdEncoding.EncodeToString([]byte(traced)))
	for _, s := range secrets {
		if strings.Contains(raw, s) {
			t.Fatalf("log holds %q:\n%s", s, raw)
		}
	}
}

func TestIMAPLoginPasswordIsMaskedInEveryForm(t *testing.T) {
	cases := []struct {
		name   string
		script []exchange
		want   []string
	}{
		{"atom", []exchange{
			{"C", "a1 LOGIN alice@example.com s3cret\r\n"},
			{"S", "a1 OK LOGIN completed\r\n"},
		}, []string{"C: a1 LOGIN alice@example.com ***", "S: a1 OK LOGIN completed"}},
		{"quoted", []exchange{
			{"C", `a1 login "alice@example.com" "s3cret \"pass\" with spaces"` + "\r\n"},
		}, []string{`C: a1 login "alice@example.com" ***`}},
		{"literal password", []exchange{
			{"C", "a1 LOGIN alice@example.com {11}\r\n"},
			{"S", "+ Ready for literal data\r\n"},
			{"C", password + "\r\n"},
			{"S", "a1 OK LOGIN completed\r\n"},
		}, []string{"C: a1 LOGIN alice@example.com ***", "S: + Ready for literal data", "C: ***", "S: a1 OK LOGIN completed"}},
		{"literal user and non-synchronizing literal password", []exchange{
			{"C", "a1 LOGIN {17+}\r\nalice@example.com {11+}\r\n" + password + "\r\n"},
		}, []string{"C: a1 LOGIN {17+}", "C: <literal, 17 bytes> ***", "C: ***"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, raw := run(t, IMAP, c.script)
			wantLines(t, got, c.want)
			wantNoSecret(t, raw, "s3cret")
		})
	}
}

func TestIMAPAuthenticatePlainIsMaskedWithAndWithoutInitialResponse(t *testing.T) {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + traced + "\x00" + password))
	got, raw := run(t, IMAP, []exchange{
		{"C", "a1 AUTHENTICATE PLAIN " + ir + "\r\n"},
		{"S", "a1 OK Authenticated\r\n"},
		{"C", "a2 AUTHENTICATE PLAIN\r\n"},
		{"S", "+ \r\n"},
		{"C", ir + "\r\n"},
		{"S", "a2 OK Authenticated\r\n"},
		{"C", "a3 NOOP\r\n"},
	})
	wantLines(t, got, []string{
		"C: a1 AUTHENTICATE PLAIN ***", "S: a1 OK Authenticated",
		"C: a2 AUTHENTICATE PLAIN", "S: + ", "C: ***", "S: a2 OK Authenticated",
		"C: a3 NOOP",
	})
	wantNoSecret(t, raw, ir)
}

func TestSMTPAuthIsMaskedForPlainAndLogin(t *testing.T) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + traced + "\x00" + password))
	user := base64.StdEncoding.EncodeToString([]byte(traced))
	pass := base64.StdEncoding.EncodeToString([]byte(password))
	got, raw := run(t, SMTP, []exchange{
		{"C", "AUTH PLAIN " + plain + "\r\n"},
		{"S", "535 5.7.8 Authentication failed\r\n"},
		{"C", "AUTH PLAIN\r\n"},
		{"S", "334 \r\n"},
		{"C", plain + "\r\n"},
		{"S", "535 5.7.8 Authentication failed\r\n"},
		{"C", "AUTH LOGIN\r\n"},
		{"S", "334 VXNlcm5hbWU6\r\n"},
		{"C", user + "\r\n"},
		{"S", "334 UGFzc3dvcmQ6\r\n"},
		{"C", pass + "\r\n"},
		{"S", "535 5.7.8 Authentication failed\r\n"},
		{"C", "AUTH LOGIN " + user + "\r\n"},
		{"S", "334 UGFzc3dvcmQ6\r\n"},
		{"C", pass + "\r\n"},
		{"S", "235 2.0.0 Authentication succeeded\r\n"},
		{"C", "MAIL FROM:<alice@example.com>\r\n"},
	})
	wantLines(t, got, []string{
		"C: AUTH PLAIN ***", "S: 535 5.7.8 Authentication failed",
		"C: AUTH PLAIN", "S: 334 ", "C: ***", "S: 535 5.7.8 Authentication failed",
		"C: AUTH LOGIN", "S: 334 VXNlcm5hbWU6", "C: ***", "S: 334 UGFzc3dvcmQ6", "C: ***", "S: 535 5.7.8 Authentication failed",
		"C: AUTH LOGIN ***", "S: 334 UGFzc3dvcmQ6", "C: ***", "S: 235 2.0.0 Authentication succeeded",
		"C: MAIL FROM:<alice@example.com>",
	})
	wantNoSecret(t, raw, plain, pass)
}

// A client that sends its SASL responses without waiting for 334 still
// gets them masked, even behind a pipelined EHLO's reply.
func TestSMTPAuthResponsesSentAheadAreMasked(t *testing.T) {
	pass := base64.StdEncoding.EncodeToString([]byte(password))
	got, raw := run(t, SMTP, []exchange{
		{"C", "EHLO phone\r\nAUTH LOGIN\r\nYWxpY2U=\r\n" + pass + "\r\n"},
		{"S", "250-mail.example.com\r\n250 AUTH PLAIN LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.0.0 OK\r\n"},
	})
	wantLines(t, got, []string{
		"C: EHLO phone", "C: AUTH LOGIN", "C: ***", "C: ***",
		"S: 250-mail.example.com", "S: 250 AUTH PLAIN LOGIN", "S: 334 VXNlcm5hbWU6", "S: 334 UGFzc3dvcmQ6", "S: 235 2.0.0 OK",
	})
	wantNoSecret(t, raw, pass)
}

func TestSMTPMessageTextIsReplacedByItsSize(t *testing.T) {
	body := "Subject: hi\r\n\r\nthe body text\r\n..dot-stuffed\r\n"
	got, raw := run(t, SMTP, []exchange{
		{"C", "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"},
		{"S", "250 2.0.0 OK\r\n250 2.0.0 OK\r\n354 Go ahead\r\n"},
		{"C", body + ".\r\n"},
		{"S", "250 2.0.0 OK: queued\r\n"},
		{"C", "BDAT 14 LAST\r\nthe body text\n"},
		{"S", "250 2.0.0 OK\r\n"},
		{"C", "QUIT\r\n"},
	})
	wantLines(t, got, []string{
		"C: MAIL FROM:<alice@example.com>", "C: RCPT TO:<bob@example.com>", "C: DATA",
		"S: 250 2.0.0 OK", "S: 250 2.0.0 OK", "S: 354 Go ahead",
		fmt.Sprintf("C: <message body, %d bytes>", len(body)), "C: .",
		"S: 250 2.0.0 OK: queued",
		"C: BDAT 14 LAST", "C: <message body, 14 bytes>", "S: 250 2.0.0 OK",
		"C: QUIT",
	})
	wantNoSecret(t, raw, "the body text", "Subject: hi", "dot-stuffed")
}

// A refused DATA ends the message mode: what follows is commands again.
func TestSMTPRefusedDataLeavesCommandsVisible(t *testing.T) {
	got, _ := run(t, SMTP, []exchange{
		{"C", "DATA\r\n"},
		{"S", "554 5.5.1 No valid recipients\r\n"},
		{"C", "RSET\r\n"},
	})
	wantLines(t, got, []string{"C: DATA", "S: 554 5.5.1 No valid recipients", "C: RSET"})
}

func TestIMAPLiteralsOfMessagesAreReplacedByTheirSize(t *testing.T) {
	msg := "Subject: hi\r\n\r\nthe body text\r\n"
	got, raw := run(t, IMAP, []exchange{
		{"C", fmt.Sprintf("a1 APPEND INBOX (\\Seen) {%d}\r\n", len(msg))},
		{"S", "+ Ready for literal data\r\n"},
		{"C", msg + "\r\n"},
		{"S", "a1 OK [APPENDUID 1 1] APPEND completed\r\n"},
		{"C", "a2 UID FETCH 1 (FLAGS BODY.PEEK[])\r\n"},
		{"S", fmt.Sprintf("* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {%d}\r\n%s)\r\na2 OK FETCH completed\r\n", len(msg), msg)},
		{"C", "a3 SEARCH TEXT {5+}\r\nhello\r\n"},
		{"C", "a4 APPEND Drafts ~{5+}\r\nhello\r\n"},
	})
	wantLines(t, got, []string{
		fmt.Sprintf("C: a1 APPEND INBOX (\\Seen) {%d}", len(msg)),
		"S: + Ready for literal data",
		fmt.Sprintf("C: <message body, %d bytes>", len(msg)),
		"S: a1 OK [APPENDUID 1 1] APPEND completed",
		"C: a2 UID FETCH 1 (FLAGS BODY.PEEK[])",
		fmt.Sprintf("S: * 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {%d}", len(msg)),
		fmt.Sprintf("S: <literal, %d bytes>)", len(msg)),
		"S: a2 OK FETCH completed",
		"C: a3 SEARCH TEXT {5+}", "C: <literal, 5 bytes>",
		"C: a4 APPEND Drafts ~{5+}", "C: <message body, 5 bytes>",
	})
	wantNoSecret(t, raw, "the body text", "hello")
}

// A synchronizing literal the server refuses is never sent: the next line
// is a command, not literal data.
func TestIMAPRefusedLiteralLeavesNextCommandVisible(t *testing.T) {
	got, _ := run(t, IMAP, []exchange{
		{"C", "a1 APPEND INBOX {999999999}\r\n"},
		{"S", "a1 NO [TOOBIG] Message too big\r\n"},
		{"C", "a2 NOOP\r\n"},
	})
	wantLines(t, got, []string{"C: a1 APPEND INBOX {999999999}", "S: a1 NO [TOOBIG] Message too big", "C: a2 NOOP"})
}

func TestLinesBeforeLoginAreWrittenOnlyForATracedUser(t *testing.T) {
	tr, buf := newTestTracer(traced)

	other := tr.Session(IMAP, "192.0.2.2")
	client(t, other, "a1 CAPABILITY\r\n")
	server(t, other, "a1 OK done\r\n")
	other.LoggedIn("bob@example.com")
	client(t, other, "a2 SELECT INBOX\r\n")

	s := tr.Session(IMAP, "192.0.2.1")
	server(t, s, "* OK ready\r\n")
	client(t, s, "a1 CAPABILITY\r\n")
	if got := buf.lines(t); len(got) != 0 {
		t.Fatalf("lines logged before login: %v", got)
	}
	client(t, s, "a2 LOGIN Alice@Example.com x\r\n")
	s.LoggedIn("Alice@Example.com")
	server(t, s, "a2 OK LOGIN completed\r\n")
	wantLines(t, buf.lines(t), []string{
		"S: * OK ready", "C: a1 CAPABILITY", "C: a2 LOGIN Alice@Example.com ***", "S: a2 OK LOGIN completed",
	})
	if strings.Contains(buf.String(), "192.0.2.2") {
		t.Fatalf("the untraced session was logged:\n%s", buf)
	}
}

func TestFailedLoginAsTracedUserIsTraced(t *testing.T) {
	tr, buf := newTestTracer(traced)
	s := tr.Session(SMTP, "192.0.2.1")
	client(t, s, "AUTH PLAIN AGFsaWNlAHdyb25n\r\n")
	s.LoginFailed(traced)
	server(t, s, "535 5.7.8 Authentication failed\r\n")
	wantLines(t, buf.lines(t), []string{"C: AUTH PLAIN ***", "S: 535 5.7.8 Authentication failed"})
}

func TestLinesBeforeLoginAreBounded(t *testing.T) {
	tr, buf := newTestTracer(traced)
	s := tr.Session(SMTP, "192.0.2.1")
	for i := range pendingLines + 10 {
		client(t, s, fmt.Sprintf("NOOP %d\r\n", i))
	}
	client(t, s, "NOOP "+strings.Repeat("x", 3*maxLine)+"\r\n")
	s.LoggedIn(traced)
	got := buf.lines(t)
	if len(got) != pendingLines+1 {
		t.Fatalf("%d lines written at login, want %d and a note", len(got), pendingLines+1)
	}
	if got[0] != "-: <11 earlier lines not kept>" || got[1] != "C: NOOP 11" {
		t.Fatalf("first lines %q, %q", got[0], got[1])
	}
	last := got[len(got)-1]
	if !strings.HasSuffix(last, fmt.Sprintf("<cut; %d bytes in all>", 3*maxLine+7)) || len(last) > maxLine+100 {
		t.Fatalf("long line logged as %d bytes: %.80q...", len(last), last)
	}
}

func TestNobodyTracedMeansNoSession(t *testing.T) {
	tr, _ := newTestTracer()
	if s := tr.Session(IMAP, "192.0.2.1"); s != nil {
		t.Fatal("a Session was made with nobody traced")
	}
	var nilSession *Session
	if nilSession.Writer() != nil {
		t.Fatal("a nil Session's Writer is not a nil io.Writer")
	}
	nilSession.LoggedIn(traced) // must not panic
	var nilTracer *Tracer
	if nilTracer.Enabled(traced) || nilTracer.Session(SMTP, "x") != nil {
		t.Fatal("a nil Tracer traces")
	}
}

func TestSetReplacesTheTracedUsers(t *testing.T) {
	tr, _ := newTestTracer(traced)
	if !tr.Enabled("ALICE@example.com ") || tr.Enabled("bob@example.com") {
		t.Fatal("Enabled does not follow the list")
	}
	tr.Set([]string{"Bob@Example.com"})
	if tr.Enabled(traced) || !tr.Enabled("bob@example.com") {
		t.Fatal("Set did not replace the list")
	}
}

// Bytes that come from neither of the libraries' debug hooks are ignored,
// not guessed to be one direction or the other.
func TestWriteFromAnUnknownCallerIsIgnored(t *testing.T) {
	tr, buf := newTestTracer(traced)
	s := tr.Session(SMTP, "192.0.2.1")
	s.LoggedIn(traced)
	p := []byte("AUTH PLAIN AGFsaWNlAHdyb25n\r\n")
	if n, err := s.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := buf.lines(t); len(got) != 0 {
		t.Fatalf("logged %v", got)
	}
}

// A command longer than what is logged of it still has its literal found,
// also when the marker arrives split across reads.
func TestLiteralAfterACutLineIsStillHidden(t *testing.T) {
	// The first read ends exactly where the kept part of the line does,
	// inside the marker.
	first := "a1 APPEND " + strings.Repeat("x", maxLine+2-len("a1 APPEND ")-len(" {1")) + " {1"
	got, raw := run(t, IMAP, []exchange{
		{"C", first},
		{"C", "0+}\r\nthe xyzzy!\r\n"},
	})
	if len(got) != 2 || got[1] != "C: <message body, 10 bytes>" {
		t.Fatalf("traced %q", got)
	}
	wantNoSecret(t, raw, "xyzzy")
}

// Lines split across reads, as TCP delivers them, are put back together.
func TestLinesSplitAcrossWritesAreJoined(t *testing.T) {
	got, raw := run(t, IMAP, []exchange{
		{"C", "a1 LOGIN alice@example.com s3"},
		{"C", "cret\r"},
		{"C", "\na2 APPEND INBOX {10+}\r\nthe "},
		{"C", "xyzzy!\r\n"},
	})
	wantLines(t, got, []string{"C: a1 LOGIN alice@example.com ***", "C: a2 APPEND INBOX {10+}", "C: <message body, 10 bytes>"})
	wantNoSecret(t, raw, "s3cret", "xyzzy")
}

// What an untraced user's session costs per read or write once logged in,
// through the same io.TeeReader the libraries use.
func BenchmarkUntracedSessionAfterLogin(b *testing.B) {
	tr, _ := newTestTracer(traced)
	s := tr.Session(IMAP, "192.0.2.1")
	s.LoggedIn("bob@example.com")
	chunk := bytes.Repeat([]byte("x"), 4096)
	r := bytes.NewReader(chunk)
	tee := io.TeeReader(r, s)
	buf := make([]byte, len(chunk))
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		r.Reset(chunk)
		if _, err := tee.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
