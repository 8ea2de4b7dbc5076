package smtpd

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/internal/mimetest"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

// A message nested past the limit is refused at DATA and leaves nothing
// behind; one at the limit is delivered and can be read back.
func TestDataRefusesMIMENestedPastTheLimit(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	deep := strings.Replace(string(mimetest.Nested(300)), "From: alice@example.test", "From: "+alice, 1)
	err := send(c, alice, []string{bob}, deep)
	wantReply(t, err, 554, smtp.EnhancedCode{5, 6, 0})
	if !strings.Contains(err.Error(), fmt.Sprint(message.MaxNesting)) {
		t.Errorf("reply %q does not name the limit", err)
	}
	if n := len(env.messages(t, bob, storage.Inbox)); n != 0 {
		t.Fatalf("bob's INBOX has %d messages after the refusal", n)
	}
	if n := len(env.messages(t, alice, storage.Sent)); n != 0 {
		t.Fatalf("alice's Sent has %d messages after the refusal", n)
	}
	if err := send(c, alice, []string{bob}, string(mimetest.Nested(message.MaxNesting))); err != nil {
		t.Fatalf("a message at the limit: %v", err)
	}
	m := env.onlyMessage(t, bob, storage.Inbox)
	ctx := t.Context()
	box, err := env.store.Mailbox(ctx, bob, storage.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.store.Messages(ctx, bob, box.ID, []imap.UID{m.UID}, storage.LoadOptions{Envelope: true, BodyStructure: true}); err != nil {
		t.Fatalf("the message at the limit cannot be read back: %v", err)
	}
}

// A message of more MIME parts than the limit is refused at DATA like one
// nested too deeply, and leaves nothing behind; one at the limit arrives.
func TestDataRefusesMoreMIMEPartsThanTheLimit(t *testing.T) {
	env := startServer(t, func(o *Options) { o.MaxMessageSize = 1 << 20 })
	c := env.login(t, alice)
	wide := strings.Replace(string(mimetest.Wide(message.MaxParts)), "From: alice@example.test", "From: "+alice, 1)
	err := send(c, alice, []string{bob}, wide)
	wantReply(t, err, 554, smtp.EnhancedCode{5, 6, 0})
	if !strings.Contains(err.Error(), fmt.Sprint(message.MaxParts)) {
		t.Errorf("reply %q does not name the limit", err)
	}
	if n := len(env.messages(t, bob, storage.Inbox)); n != 0 {
		t.Fatalf("bob's INBOX has %d messages after the refusal", n)
	}
	if n := len(env.messages(t, alice, storage.Sent)); n != 0 {
		t.Fatalf("alice's Sent has %d messages after the refusal", n)
	}
	atLimit := strings.Replace(string(mimetest.Wide(message.MaxParts-1)), "From: alice@example.test", "From: "+alice, 1)
	if err := send(c, alice, []string{bob}, atLimit); err != nil {
		t.Fatalf("a message at the limit: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
}

// RFC 6409 8.1 and SPEC "Mail behaviour": on submission the From field is
// the user's own; otherwise 550 5.7.1 and nobody gets anything.
func TestSubmissionRefusesForeignFromHeader(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	msg := "From: Bob <bob@example.test>\r\nTo: carol@example.test\r\nSubject: trust me\r\n\r\nhi\r\n"
	err := send(c, alice, []string{carol}, msg)
	wantReply(t, err, 550, smtp.EnhancedCode{5, 7, 1})
	if !strings.Contains(err.Error(), "From header must be your own address "+alice) {
		t.Errorf("reply %q does not say what is expected", err)
	}
	if n := len(env.messages(t, carol, storage.Inbox)); n != 0 {
		t.Fatalf("carol got %d messages from a spoofed From", n)
	}
	// Upper case and a display name are still alice.
	if err := send(c, alice, []string{carol}, "From: Alice <ALICE@Example.Test>\r\n\r\nhi\r\n"); err != nil {
		t.Fatalf("alice's own address in other case: %v", err)
	}
}

// A message without From gets the user's address, as mail clients show it.
func TestSubmissionAddsMissingFrom(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := send(c, alice, []string{bob}, "To: bob@example.test\r\nSubject: no from\r\n\r\nhi\r\n"); err != nil {
		t.Fatal(err)
	}
	m := env.onlyMessage(t, bob, storage.Inbox)
	if h := headerOf(m.Body); !strings.Contains(h, "\r\nFrom: "+alice+"\r\n") {
		t.Errorf("no From added:\n%s", h)
	}
}

// The trusted inbound port carries other people's mail: any From.
func TestInboundKeepsForeignFrom(t *testing.T) {
	env := startServer(t, nil)
	c, err := smtp.Dial(env.inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := send(c, "someone@elsewhere.test", []string{bob}, "From: someone@elsewhere.test\r\n\r\nhi\r\n"); err != nil {
		t.Fatalf("inbound with a foreign From: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
}

// A bare CR is a line end by the time the message is stored.
func TestDataStoresOnlyCRLF(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := send(c, alice, []string{bob}, "From: "+alice+"\r\n\r\nbefore\r.\rafter\nend\r\n"); err != nil {
		t.Fatal(err)
	}
	body := string(env.onlyMessage(t, bob, storage.Inbox).Body)
	if !strings.HasSuffix(body, "\r\n\r\nbefore\r\n.\r\nafter\r\nend\r\n") {
		t.Errorf("stored body %q keeps a bare CR or LF", body)
	}
}

// An idle DATA after MAIL FROM ... SIZE= announcing the maximum reserves
// nothing: memory follows the bytes that arrive, not the announcement.
func TestIdleDataAfterHugeSizeHintReservesNothing(t *testing.T) {
	const maxSize = 64 << 20
	env := startServer(t, func(o *Options) { o.MaxMessageSize = maxSize })
	const sessions = 4
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for range sessions {
		c := env.login(t, alice)
		if err := c.Mail(alice, &smtp.MailOptions{Size: maxSize}); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(bob, nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		// One line, then silence: the server sits in DATA.
		if _, err := io.WriteString(w, "From: "+alice+"\r\n"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
	}
	// The sessions enter DATA when their 354 is sent, which the client
	// has seen; sample the heap for a while after that, so a buffer
	// reserved on entering DATA cannot slip between two samples.
	limit := int64(sessions) * (4 << 20)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if grown := int64(ms.HeapAlloc) - int64(before); grown > limit {
			t.Fatalf("%d idle DATA sessions announcing %d bytes grew the heap by %d bytes (limit %d)",
				sessions, maxSize, grown, limit)
		}
	}
}

// Relaying to an address literal would reach any host the server can:
// refused at RCPT with a clear reply; domain names still relay.
func TestRcptRefusesAddressLiterals(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"bob@[127.0.0.1]", "bob@[IPv6:::1]"} {
		err := c.Rcpt(rcpt, nil)
		wantReply(t, err, 550, smtp.EnhancedCode{5, 1, 2})
		if !strings.Contains(err.Error(), "address literal") {
			t.Errorf("RCPT %s: reply %q does not say why", rcpt, err)
		}
	}
	if err := c.Rcpt("dave@remote.test", nil); err != nil {
		t.Fatalf("a domain name after the refusals: %v", err)
	}
}

// A quoted local part keeps its quotes in the stored Return-Path, so the
// address means what the client sent.
func TestInboundReturnPathQuotesLocalPart(t *testing.T) {
	env := startServer(t, nil)
	r := dialRaw(t, env.inbound, nil)
	for _, line := range []string{"EHLO client.test", `MAIL FROM:<"x@y"@evil.test>`, "RCPT TO:<" + bob + ">", "DATA"} {
		if code, msg := r.cmd(t, line); code >= 400 {
			t.Fatalf("%s: %d %s", line, code, msg)
		}
	}
	if code, msg := r.cmd(t, "Subject: quoted\r\n\r\nhi\r\n."); code != 250 {
		t.Fatalf("end of data: %d %s", code, msg)
	}
	h := headerOf(env.onlyMessage(t, bob, storage.Inbox).Body)
	if !strings.HasPrefix(h, "Return-Path: <\"x@y\"@evil.test>\r\n") {
		t.Errorf("stored header:\n%s", h)
	}
}

// A big message in flight costs about its size in allocations, not a
// multiple: DATA streams into a spool file past message.SpoolAfter, the
// copies share the body, and the body structure is counted, not copied.
// What is left is bbolt's page buffer for the one stored copy.
func TestBigMessageAllocatesAboutItsSize(t *testing.T) {
	const size = 8 << 20
	env := startServer(t, func(o *Options) {
		o.MaxMessageSize = 16 << 20
		o.SpoolDir = t.TempDir()
	})
	line := strings.Repeat("x", 76) + "\r\n"
	data := []byte("From: someone@elsewhere.test\r\nSubject: big\r\n\r\n" + strings.Repeat(line, size/len(line)) + ".\r\n")
	r := dialRaw(t, env.inbound, nil)
	for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<someone@elsewhere.test>", "RCPT TO:<" + bob + ">", "DATA"} {
		if code, msg := r.cmd(t, cmd); code >= 400 {
			t.Fatalf("%s: %d %s", cmd, code, msg)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := r.Write(data); err != nil {
		t.Fatal(err)
	}
	if code, msg := r.read(t); code != 250 {
		t.Fatalf("end of data: %d %s", code, msg)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB message allocated %d MiB", size>>20, allocated>>20)
	if limit := uint64(5 * size / 2); allocated > limit {
		t.Errorf("a %d-byte message allocated %d bytes in the server (limit %d)", size, allocated, limit)
	}
}

// BDAT goes through the same intake as DATA: the deep message gets
// 554 5.6.0 at its LAST chunk, and bare CRs become CRLF.
func TestBDATGoesThroughTheSameIntake(t *testing.T) {
	env := startServer(t, nil)
	r := dialRaw(t, env.inbound, nil)
	send := func(raw []byte) (int, string) {
		for _, cmd := range []string{"RSET", "MAIL FROM:<someone@elsewhere.test>", "RCPT TO:<" + bob + ">"} {
			if code, msg := r.cmd(t, cmd); code >= 400 {
				t.Fatalf("%s: %d %s", cmd, code, msg)
			}
		}
		half := len(raw) / 2
		if _, err := fmt.Fprintf(r, "BDAT %d\r\n%s", half, raw[:half]); err != nil {
			t.Fatal(err)
		}
		if code, msg := r.read(t); code != 250 {
			t.Fatalf("first chunk: %d %s", code, msg)
		}
		if _, err := fmt.Fprintf(r, "BDAT %d LAST\r\n%s", len(raw)-half, raw[half:]); err != nil {
			t.Fatal(err)
		}
		return r.read(t)
	}
	if code, msg := r.cmd(t, "EHLO client.test"); code != 250 || !strings.Contains(msg, "CHUNKING") {
		t.Fatalf("EHLO: %d %s (no CHUNKING)", code, msg)
	}
	if code, msg := send(mimetest.Nested(300)); code != 554 || !strings.HasPrefix(msg, "5.6.0") {
		t.Errorf("BDAT of 300 levels: %d %s, want 554 5.6.0", code, msg)
	}
	if code, msg := send([]byte("Subject: cr\r\n\r\na\r.\rb\r\n")); code != 250 {
		t.Fatalf("BDAT with bare CRs: %d %s", code, msg)
	}
	if body := string(env.onlyMessage(t, bob, storage.Inbox).Body); !strings.HasSuffix(body, "\r\n\r\na\r\n.\r\nb\r\n") {
		t.Errorf("stored %q", body)
	}
}
