package smtpd

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/storage"
)

const simpleBody = "Hello Bob,\r\n\r\nsee you at noon.\r\n"

func simpleMessage(extraHeader string) string {
	return "From: Alice <alice@example.test>\r\n" +
		"To: Bob <bob@example.test>\r\n" +
		extraHeader +
		"Subject: lunch\r\n" +
		"\r\n" + simpleBody
}

func TestStartTLSThenAuthPlainDelivers(t *testing.T) {
	env := startServer(t, nil)
	c := env.dialStartTLS(t)
	if !c.SupportsAuth("PLAIN") || !c.SupportsAuth("LOGIN") {
		_, mechs := c.Extension("AUTH")
		t.Fatalf("after STARTTLS AUTH offers %q, want PLAIN and LOGIN", mechs)
	}
	if err := c.Auth(sasl.NewPlainClient("", alice, testPassword)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := send(c, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
}

func TestStartTLSThenAuthLoginWithInitialResponse(t *testing.T) {
	env := startServer(t, nil)
	c := env.dialStartTLS(t)
	// go-sasl's LOGIN client sends the user name with AUTH LOGIN.
	if err := c.Auth(sasl.NewLoginClient(alice, testPassword)); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := send(c, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
}

func TestAuthLoginAsksUsernameThenPassword(t *testing.T) {
	env := startServer(t, nil)
	r := dialRaw(t, env.submissions, env.clientTLS)
	b64 := base64.StdEncoding.EncodeToString
	r.cmd(t, "EHLO client.example.test")
	if code, msg := r.cmd(t, "AUTH LOGIN"); code != 334 || msg != b64([]byte("Username:")) {
		t.Fatalf("AUTH LOGIN: %d %q, want 334 %q", code, msg, b64([]byte("Username:")))
	}
	if code, msg := r.cmd(t, b64([]byte(alice))); code != 334 || msg != b64([]byte("Password:")) {
		t.Fatalf("user name: %d %q, want 334 %q", code, msg, b64([]byte("Password:")))
	}
	if code, msg := r.cmd(t, b64([]byte(testPassword))); code != 235 {
		t.Fatalf("password: %d %q, want 235", code, msg)
	}
	if code, msg := r.cmd(t, "MAIL FROM:<"+alice+">"); code != 250 {
		t.Fatalf("MAIL after AUTH LOGIN: %d %q", code, msg)
	}
}

func TestAuthRefusedBeforeTLS(t *testing.T) {
	env := startServer(t, nil)
	r := dialRaw(t, env.submission, nil)
	code, ehlo := r.cmd(t, "EHLO client.example.test")
	if code != 250 || !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Fatalf("plain EHLO reply %d %q: want STARTTLS and no AUTH", code, ehlo)
	}
	for _, want := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 65536"} {
		if !strings.Contains(ehlo, want) {
			t.Errorf("EHLO does not advertise %s: %q", want, ehlo)
		}
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + testPassword))
	if code, msg := r.cmd(t, "AUTH PLAIN "+plain); code/100 != 5 {
		t.Fatalf("AUTH without TLS: %d %q, want a 5xx refusal", code, msg)
	}
	if code, msg := r.cmd(t, "MAIL FROM:<"+alice+">"); code != 530 {
		t.Fatalf("MAIL after refused AUTH: %d %q, want 530", code, msg)
	}
}

func TestAuthWithoutTLSWhenInsecureAuthAllowed(t *testing.T) {
	env := startServer(t, func(o *Options) { o.AllowInsecureAuth = true })
	c, err := smtp.Dial(env.submission)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.SupportsAuth("PLAIN") {
		t.Fatal("AUTH PLAIN not offered without TLS although AllowInsecureAuth is set")
	}
	if err := c.Auth(sasl.NewPlainClient("", alice, testPassword)); err != nil {
		t.Fatalf("AUTH PLAIN without TLS: %v", err)
	}
	if err := send(c, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send: %v", err)
	}
	msg := env.onlyMessage(t, bob, storage.Inbox)
	if !bytes.Contains(msg.Body, []byte(" with ESMTPA id ")) {
		t.Errorf("Received should say ESMTPA for AUTH without TLS:\n%s", headerOf(msg.Body))
	}
}

func TestBadCredentialsGet535(t *testing.T) {
	env := startServer(t, nil)
	for _, tc := range []struct{ name, user, password string }{
		{"wrong password", alice, "wrong"},
		{"unknown user", "nobody@example.test", testPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := env.dialStartTLS(t)
			err := c.Auth(sasl.NewPlainClient("", tc.user, tc.password))
			wantReply(t, err, 535, smtp.EnhancedCode{5, 7, 8})
			c2 := env.dialStartTLS(t)
			err = c2.Auth(sasl.NewLoginClient(tc.user, tc.password))
			wantReply(t, err, 535, smtp.EnhancedCode{5, 7, 8})
		})
	}
}

func TestMailWithoutAuthGets530(t *testing.T) {
	env := startServer(t, nil)
	c := env.dialStartTLS(t)
	wantReply(t, c.Mail(alice, nil), 530, smtp.EnhancedCode{5, 7, 0})
}

func TestSpoofedMailFromGets553(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	wantReply(t, c.Mail(bob, nil), 553, smtp.EnhancedCode{5, 7, 1})
	wantReply(t, c.Mail("", nil), 553, smtp.EnhancedCode{5, 7, 1})
	if err := c.Mail("Alice@Example.TEST", nil); err != nil {
		t.Fatalf("own address in other case refused: %v", err)
	}
}

func TestRecipientRouting(t *testing.T) {
	for _, tc := range []struct {
		name         string
		queueEnabled bool
		rcpt         string
		code         int
		enhanced     smtp.EnhancedCode
	}{
		{"unknown local user", true, "nobody@example.test", 550, smtp.EnhancedCode{5, 1, 1}},
		{"external with queue enabled is accepted", true, "someone@elsewhere.test", 0, smtp.EnhancedCode{}},
		{"external with an angle bracket", true, `"a>b"@elsewhere.test`, 553, smtp.EnhancedCode{5, 1, 3}},
		{"external with relaying disabled", false, "someone@elsewhere.test", 550, smtp.EnhancedCode{5, 7, 1}},
		{"malformed domain", true, "bob@bad_domain.test", 553, smtp.EnhancedCode{5, 1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startServer(t, func(o *Options) { o.QueueEnabled = tc.queueEnabled })
			c := env.login(t, alice)
			if err := c.Mail(alice, nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt(tc.rcpt, nil); tc.code == 0 && err != nil {
				t.Fatalf("RCPT %s: %v, want it accepted", tc.rcpt, err)
			} else if tc.code != 0 {
				wantReply(t, err, tc.code, tc.enhanced)
			}
			if err := c.Rcpt(strings.ToUpper(bob), nil); err != nil {
				t.Fatalf("known local user in upper case refused: %v", err)
			}
		})
	}
}

func TestTooManyRecipientsGets452(t *testing.T) {
	env := startServer(t, func(o *Options) { o.MaxRecipients = 2 })
	c := env.login(t, alice)
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{bob, carol} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	wantReply(t, c.Rcpt(alice, nil), 452, smtp.EnhancedCode{4, 5, 3})
}

func TestDeclaredSizeOverLimitGets552(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	err := c.Mail(alice, &smtp.MailOptions{Size: testMaxSize + 1})
	wantReply(t, err, 552, smtp.EnhancedCode{5, 3, 4})
}

func TestOversizeDataGets552AndStoresNothing(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	big := simpleMessage("") + strings.Repeat("x"+strings.Repeat("y", 70)+"\r\n", testMaxSize/72+10)
	wantReply(t, send(c, alice, []string{bob}, big), 552, smtp.EnhancedCode{5, 3, 4})
	if msgs := env.messages(t, bob, storage.Inbox); len(msgs) != 0 {
		t.Fatalf("oversize message stored in bob's INBOX (%d messages)", len(msgs))
	}
	if msgs := env.messages(t, alice, storage.Sent); len(msgs) != 0 {
		t.Fatalf("oversize message stored in alice's Sent (%d messages)", len(msgs))
	}
	// The session goes on: the next message is accepted.
	if err := send(c, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send after oversize: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
}

func TestDeliveryToTwoUsersAndSentCopy(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := send(c, alice, []string{bob, carol, bob}, simpleMessage("")); err != nil {
		t.Fatalf("send: %v", err)
	}
	for _, user := range []string{bob, carol} {
		msg := env.onlyMessage(t, user, storage.Inbox)
		if !bytes.HasSuffix(msg.Body, []byte("\r\n\r\n"+simpleBody)) {
			t.Errorf("%s's copy does not end with the body byte for byte:\n%q", user, msg.Body)
		}
		if slices.Contains(msg.Flags, imap.FlagSeen) {
			t.Errorf("%s's copy is \\Seen on arrival", user)
		}
	}
	// Read tracking: the Sent copy stays unread until bob and carol read.
	sent := env.onlyMessage(t, alice, storage.Sent)
	if slices.Contains(sent.Flags, imap.FlagSeen) {
		t.Errorf("Sent copy flags %v: \\Seen before anyone read it", sent.Flags)
	}
	if msgs := env.messages(t, alice, storage.Inbox); len(msgs) != 0 {
		t.Errorf("sender's INBOX got %d messages", len(msgs))
	}
	tx := env.waitTransaction(t)
	if tx["result"] != "delivered" || tx["rcpts"] != "2" || tx["from"] != alice {
		t.Errorf("transaction log %v, want delivered, 2 recipients, from alice", tx)
	}
}

func TestSentCopyKeepsBccRecipientsCopiesDoNot(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	bcc := "Bcc: carol@example.test,\r\n\tdave@example.test\r\n"
	if err := send(c, alice, []string{bob, carol}, simpleMessage(bcc)); err != nil {
		t.Fatalf("send: %v", err)
	}
	for _, user := range []string{bob, carol} {
		h := headerOf(env.onlyMessage(t, user, storage.Inbox).Body)
		if strings.Contains(strings.ToLower(h), "bcc:") || strings.Contains(h, "dave@") {
			t.Errorf("%s's copy still carries Bcc:\n%s", user, h)
		}
		if !strings.Contains(h, "Subject: lunch\r\n") {
			t.Errorf("%s's copy lost the field after Bcc:\n%s", user, h)
		}
	}
	sent := headerOf(env.onlyMessage(t, alice, storage.Sent).Body)
	if !strings.Contains(sent, bcc) {
		t.Errorf("Sent copy lost its Bcc:\n%s", sent)
	}
}

func TestReceivedFieldIsPrepended(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := send(c, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := string(env.onlyMessage(t, bob, storage.Inbox).Body)
	want := regexp.MustCompile(`^Return-Path: <alice@example\.test>\r\n` +
		`Received: from localhost \(\[127\.0\.0\.1\]\)\r\n` +
		`\tby mail\.example\.test with ESMTPSA id [0-9a-f]{16}\r\n` +
		`\tfor <bob@example\.test>;\r\n` +
		`\t\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [-+]\d{4}\r\n` +
		`From: Alice`)
	if !want.MatchString(got) {
		t.Errorf("recipient's copy starts\n%q\nwant it to match %s", got[:min(len(got), 300)], want)
	}
	sent := string(env.onlyMessage(t, alice, storage.Sent).Body)
	if !strings.HasPrefix(sent, "Received: from localhost ([127.0.0.1])\r\n") {
		t.Errorf("Sent copy starts %q, want the Received field", sent[:min(len(sent), 100)])
	}
}

func TestMessageIDAddedWhenMissing(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := send(c, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send: %v", err)
	}
	re := regexp.MustCompile(`(?m)^Message-ID: <[A-Z2-7]+@mail\.example\.test>\r$`)
	inbox := re.FindAllString(headerOf(env.onlyMessage(t, bob, storage.Inbox).Body), -1)
	sent := re.FindAllString(headerOf(env.onlyMessage(t, alice, storage.Sent).Body), -1)
	if len(inbox) != 1 || len(sent) != 1 || inbox[0] != sent[0] {
		t.Fatalf("Message-ID fields: INBOX %q, Sent %q; want the same single one in both", inbox, sent)
	}
}

func TestMessageIDKeptWhenPresent(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := send(c, alice, []string{bob}, simpleMessage("Message-Id: <given@client.test>\r\n")); err != nil {
		t.Fatalf("send: %v", err)
	}
	h := headerOf(env.onlyMessage(t, bob, storage.Inbox).Body)
	if n := strings.Count(strings.ToLower(h), "message-id:"); n != 1 || !strings.Contains(h, "<given@client.test>") {
		t.Fatalf("header has %d Message-ID fields, want only the client's:\n%s", n, h)
	}
}

func TestDisconnectMidDataStoresNothing(t *testing.T) {
	env := startServer(t, nil)
	c := env.login(t, alice)
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bob, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "Subject: half\r\n\r\nthe first half"); err != nil {
		t.Fatal(err)
	}
	c.Close()

	if tx := env.waitTransaction(t); tx["result"] != "aborted" {
		t.Fatalf("transaction log %v, want result aborted", tx)
	}
	if msgs := env.messages(t, bob, storage.Inbox); len(msgs) != 0 {
		t.Fatalf("aborted message stored in bob's INBOX")
	}
	if msgs := env.messages(t, alice, storage.Sent); len(msgs) != 0 {
		t.Fatalf("aborted message stored in alice's Sent")
	}
}

func TestImplicitTLSSubmissionsDelivers(t *testing.T) {
	env := startServer(t, nil)
	c, err := smtp.DialTLS(env.submissions, env.clientTLS)
	if err != nil {
		t.Fatalf("dial submissions: %v", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on the implicit TLS port")
	}
	if err := c.Auth(sasl.NewPlainClient("", alice, testPassword)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := send(c, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
	env.onlyMessage(t, alice, storage.Sent)
}

func TestInboundAcceptsTrustedPeerWithoutAuth(t *testing.T) {
	env := startServer(t, nil)
	c, err := smtp.Dial(env.inbound)
	if err != nil {
		t.Fatalf("dial inbound: %v", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered on the inbound port")
	}
	if err := c.Mail("", nil); err != nil {
		t.Fatalf("null sender refused on inbound: %v", err)
	}
	if err := c.Rcpt("Someone@Elsewhere.test", nil); err != nil {
		t.Fatalf("external recipient refused on inbound with the queue enabled: %v", err)
	}
	if err := c.Rcpt(bob, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "From: monitor@example.test\r\nSubject: disk full\r\n\r\n/var is at 99%\r\n")
	if err := w.Close(); err != nil {
		t.Fatalf("DATA: %v", err)
	}
	msg := env.onlyMessage(t, bob, storage.Inbox)
	if !bytes.HasPrefix(msg.Body, []byte("Return-Path: <>\r\nReceived: from localhost ([127.0.0.1])\r\n\tby mail.example.test with ESMTP id ")) {
		t.Errorf("inbound copy starts %q", msg.Body[:min(len(msg.Body), 150)])
	}
	for _, u := range []string{alice, bob, carol} {
		if msgs := env.messages(t, u, storage.Sent); len(msgs) != 0 {
			t.Errorf("inbound mail made a Sent copy for %s", u)
		}
	}
	// The external recipient is queued in the same delivery, as system mail.
	entries, err := env.store.QueueEntries(context.Background(), storage.QueueFilter{})
	if err != nil || len(entries) != 1 {
		t.Fatalf("queue entries %+v (%v): want one", entries, err)
	}
	en, err := env.store.QueueEntry(context.Background(), entries[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if en.Source != storage.SourceSystem || en.From != "" || en.Status != storage.QueueOutbox ||
		len(en.Recipients) != 1 || en.Recipients[0].Address != "Someone@elsewhere.test" {
		t.Errorf("queue entry %+v", en)
	}
	if !strings.HasPrefix(en.Body, "Received: ") || !strings.Contains(en.Body, "Subject: disk full") {
		t.Errorf("relay copy starts %q: want the Received field first and no Return-Path", en.Body[:min(len(en.Body), 80)])
	}
}

func TestInboundRefusesUntrustedPeer(t *testing.T) {
	env := startServer(t, func(o *Options) {
		o.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	c, err := smtp.Dial(env.inbound)
	if err == nil {
		defer c.Close()
		err = c.Hello("client.example.test")
	}
	wantReply(t, err, 554, smtp.EnhancedCode{5, 7, 1})
}

// panicOnceStore panics in its first Deliver.
type panicOnceStore struct {
	storage.Store
	panicked atomic.Bool
}

func (s *panicOnceStore) Deliver(ctx context.Context, d *storage.Delivery) (*storage.DeliveryResult, error) {
	if s.panicked.CompareAndSwap(false, true) {
		panic("injected panic in Deliver")
	}
	return s.Store.Deliver(ctx, d)
}

func TestPanicInSessionIsRecoveredAndServerKeepsServing(t *testing.T) {
	env := startServerWithStore(t, &panicOnceStore{Store: openStore(t)}, nil)

	c := env.login(t, alice)
	err := send(c, alice, []string{bob}, simpleMessage(""))
	wantReply(t, err, 421, smtp.EnhancedCode{4, 0, 0})

	c2 := env.login(t, alice)
	if err := send(c2, alice, []string{bob}, simpleMessage("")); err != nil {
		t.Fatalf("send after a panic: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
}

func TestShutdownLetsTransactionInFlightFinish(t *testing.T) {
	env := startServer(t, nil)
	busy := env.login(t, alice)
	if err := busy.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt(bob, nil); err != nil {
		t.Fatal(err)
	}
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	msg := simpleMessage("")
	io.WriteString(w, msg[:len(msg)/2])

	idle := dialRaw(t, env.submission, nil)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- env.srv.Shutdown(ctx) }()

	// The idle connection is told to go once Shutdown has begun.
	if code, text := idle.read(t); code != 421 {
		t.Fatalf("idle connection got %d %q, want 421", code, text)
	}
	io.WriteString(w, msg[len(msg)/2:])
	if err := w.Close(); err != nil {
		t.Fatalf("DATA in flight during Shutdown: %v", err)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
	if _, err := smtp.Dial(env.submission); err == nil {
		t.Error("submission still accepts connections after Shutdown")
	}
}
