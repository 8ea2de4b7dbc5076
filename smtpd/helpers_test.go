package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/internal/testcert"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

const (
	testHostname = "mail.example.test"
	testDomain   = "example.test"
	alice        = "alice@example.test"
	bob          = "bob@example.test"
	carol        = "carol@example.test"
	testPassword = "correct horse battery staple"
	testMaxSize  = 64 << 10
	waitLimit    = 10 * time.Second
)

// testEnv is a running Server on loopback listeners over a real store.
type testEnv struct {
	srv         *Server
	store       storage.Store
	submission  string
	submissions string
	inbound     string
	clientTLS   *tls.Config
	// transactions receives every "smtp transaction" log record.
	transactions chan slog.Record
}

// startServer serves all three ports on 127.0.0.1 over a fresh store (see
// openStore). mutate may change the options.
func startServer(t *testing.T, mutate func(*Options)) *testEnv {
	t.Helper()
	return startServerWithStore(t, openStore(t), mutate)
}

// openStore opens a real store in t.TempDir() with alice, bob and carol.
func openStore(t *testing.T) storage.Store {
	t.Helper()
	return openQuotaStore(t, 0)
}

// openQuotaStore is openStore with a quota of that many bytes per user.
func openQuotaStore(t *testing.T, quota int64) storage.Store {
	t.Helper()
	// bcrypt's minimum cost: these tests are about SMTP, not hashing.
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), boltstore.Options{PasswordCost: bcrypt.MinCost, Quota: quota})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	for _, u := range []string{alice, bob, carol} {
		if err := store.CreateUser(ctx, u, testPassword, false); err != nil {
			t.Fatalf("create %s: %v", u, err)
		}
	}
	return store
}

func startServerWithStore(t *testing.T, store storage.Store, mutate func(*Options)) *testEnv {
	t.Helper()
	serverTLS, clientTLS := testTLS(t)
	env := &testEnv{store: store, clientTLS: clientTLS, transactions: make(chan slog.Record, 100)}
	opts := Options{
		Hostname:        testHostname,
		Domains:         []string{testDomain},
		Store:           store,
		TLSConfig:       serverTLS,
		MaxMessageSize:  testMaxSize,
		MaxRecipients:   5,
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		QueueEnabled:    true,
		Logger:          slog.New(&captureHandler{transactions: env.transactions}),
	}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.srv = srv

	serveErrs := make(chan error, 3)
	listen := func(serve func(net.Listener) error) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		go func() { serveErrs <- serve(l) }()
		return l.Addr().String()
	}
	env.submission = listen(srv.ServeSubmission)
	env.submissions = listen(srv.ServeSubmissions)
	env.inbound = listen(srv.ServeInbound)

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for range 3 {
			select {
			case err := <-serveErrs:
				if err != nil {
					t.Errorf("Serve returned %v after Shutdown, want nil", err)
				}
			case <-ctx.Done():
				t.Errorf("Serve did not return after Shutdown")
				return
			}
		}
	})
	return env
}

// testTLS makes a self-signed certificate for testHostname and 127.0.0.1.
func testTLS(t *testing.T) (server, client *tls.Config) {
	return testcert.New(t, testHostname)
}

// captureHandler passes the server's transaction log lines to a channel, so
// tests can wait for a transaction to be over without sleeping.
type captureHandler struct {
	transactions chan slog.Record
	attrs        []slog.Attr
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "smtp transaction" {
		return nil
	}
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	select {
	case h.transactions <- r:
	default:
	}
	return nil
}

func (h *captureHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &captureHandler{transactions: h.transactions, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *captureHandler) WithGroup(string) slog.Handler { return h }

// waitTransaction returns the next transaction log line's attributes.
func (e *testEnv) waitTransaction(t *testing.T) map[string]string {
	t.Helper()
	select {
	case r := <-e.transactions:
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		return attrs
	case <-time.After(waitLimit):
		t.Fatal("no transaction was logged")
		return nil
	}
}

// dialStartTLS connects to the submission port and upgrades with STARTTLS.
func (e *testEnv) dialStartTLS(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(e.submission, e.clientTLS)
	if err != nil {
		t.Fatalf("dial submission: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login connects with STARTTLS and authenticates user with AUTH PLAIN.
func (e *testEnv) login(t *testing.T, user string) *smtp.Client {
	t.Helper()
	c := e.dialStartTLS(t)
	if err := c.Auth(sasl.NewPlainClient("", user, testPassword)); err != nil {
		t.Fatalf("AUTH PLAIN %s: %v", user, err)
	}
	return c
}

// send runs one transaction and returns the first error.
func send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

// messages returns the messages of a mailbox with their bodies.
func (e *testEnv) messages(t *testing.T, user, mailbox string) []*storage.Message {
	t.Helper()
	ctx := context.Background()
	mbox, err := e.store.Mailbox(ctx, user, mailbox)
	if err != nil {
		t.Fatalf("mailbox %s %s: %v", user, mailbox, err)
	}
	uids, err := e.store.UIDs(ctx, user, mbox.ID)
	if err != nil {
		t.Fatalf("uids %s %s: %v", user, mailbox, err)
	}
	if len(uids) == 0 {
		return nil
	}
	msgs, err := e.store.Messages(ctx, user, mbox.ID, uids, storage.LoadOptions{Body: true})
	if err != nil {
		t.Fatalf("messages %s %s: %v", user, mailbox, err)
	}
	return msgs
}

// onlyMessage returns the one message of a mailbox, failing otherwise.
func (e *testEnv) onlyMessage(t *testing.T, user, mailbox string) *storage.Message {
	t.Helper()
	msgs := e.messages(t, user, mailbox)
	if len(msgs) != 1 {
		t.Fatalf("%s %s has %d messages, want 1", user, mailbox, len(msgs))
	}
	return msgs[0]
}

// wantReply checks that err is an SMTP reply with the given codes.
func wantReply(t *testing.T, err error, code int, enhanced smtp.EnhancedCode) {
	t.Helper()
	var smtpErr *smtp.SMTPError
	if !errors.As(err, &smtpErr) {
		t.Fatalf("got %v, want SMTP reply %d %v", err, code, enhanced)
	}
	if smtpErr.Code != code || smtpErr.EnhancedCode != enhanced {
		t.Fatalf("got %d %v %q, want %d %v", smtpErr.Code, smtpErr.EnhancedCode, smtpErr.Message, code, enhanced)
	}
}

// rawConn speaks SMTP line by line for replies a client library hides.
type rawConn struct {
	net.Conn
	text *textproto.Conn
}

func dialRaw(t *testing.T, addr string, tlsConfig *tls.Config) *rawConn {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	if tlsConfig != nil {
		c, err = tls.Dial("tcp", addr, tlsConfig)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	r := &rawConn{Conn: c, text: textproto.NewConn(c)}
	if code, msg := r.read(t); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return r
}

func (r *rawConn) read(t *testing.T) (int, string) {
	t.Helper()
	code, msg, err := r.text.ReadResponse(0)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

func (r *rawConn) cmd(t *testing.T, line string) (int, string) {
	t.Helper()
	if err := r.text.PrintfLine("%s", line); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	return r.read(t)
}

// headerOf returns the header section of a raw message.
func headerOf(raw []byte) string {
	s := string(raw)
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		return s[:i+2]
	}
	return s
}
