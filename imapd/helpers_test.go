package imapd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

const (
	alice    = "alice@example.com"
	bob      = "bob@example.com"
	password = "correct horse battery staple"
	// waitLimit bounds every wait for something the server should do.
	waitLimit = 10 * time.Second
)

// testEnv is a real store in a temporary directory and a real server on
// loopback listeners.
type testEnv struct {
	t       testing.TB
	store   storage.Store
	srv     *Server
	metrics *countingMetrics
	// addr is the plain (STARTTLS) listener, tlsAddr the implicit-TLS one.
	addr, tlsAddr string
	clientTLS     *tls.Config
}

type envOption func(*Options)

func withSecureAuthOnly() envOption { return func(o *Options) { o.AllowInsecureAuth = false } }
func withMaxMessageSize(n int64) envOption {
	return func(o *Options) { o.MaxMessageSize = n }
}
func withStoreWrapper(wrap func(storage.Store) storage.Store) envOption {
	return func(o *Options) { o.Store = wrap(o.Store) }
}

func newTestEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	return newQuotaEnv(t, 0, opts...)
}

// newQuotaEnv is newTestEnv over a store whose users may keep quota bytes
// each (0: no limit).
func newQuotaEnv(t testing.TB, quota int64, opts ...envOption) *testEnv {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), boltstore.Options{
		Logger:       quiet,
		PasswordCost: bcrypt.MinCost,
		Quota:        quota,
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	for _, u := range []string{alice, bob} {
		if err := store.CreateUser(ctx, u, password, false); err != nil {
			t.Fatalf("create user %s: %v", u, err)
		}
	}

	serverTLS, clientTLS := testTLSConfigs(t)
	metrics := &countingMetrics{}
	o := Options{
		Store:             store,
		TLSConfig:         serverTLS,
		AllowInsecureAuth: true,
		Logger:            quiet,
		Metrics:           metrics,
	}
	for _, opt := range opts {
		opt(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	implicit, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(plain) }()
	go func() { served <- srv.ServeTLS(implicit) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		for range 2 {
			if err := <-served; err != nil {
				t.Errorf("serve returned %v after Close", err)
			}
		}
	})
	return &testEnv{
		t: t, store: store, srv: srv, metrics: metrics,
		addr: plain.Addr().String(), tlsAddr: implicit.Addr().String(),
		clientTLS: clientTLS,
	}
}

// testTLSConfigs makes a throwaway self-signed certificate for 127.0.0.1.
func testTLSConfigs(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pochta test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

// dial connects without TLS; the client is closed at the end of the test.
func (e *testEnv) dial(opts *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, opts)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// login connects and logs in as user.
func (e *testEnv) login(user string, opts *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	c := e.dial(opts)
	if err := c.Login(user, password).Wait(); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// loginSelect logs in and selects a mailbox.
func (e *testEnv) loginSelect(user, mailbox string, opts *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	c := e.login(user, opts)
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		e.t.Fatalf("select %s: %v", mailbox, err)
	}
	return c
}

// appendMsg appends through the store (as an SMTP delivery would) and
// returns the UID.
func (e *testEnv) appendMsg(user, mailbox string, raw []byte, flags ...imap.Flag) imap.UID {
	e.t.Helper()
	res, err := e.store.Append(context.Background(), user, mailbox, &storage.NewMessage{Raw: raw, Flags: flags})
	if err != nil {
		e.t.Fatalf("append to %s/%s: %v", user, mailbox, err)
	}
	return res.UID
}

// testMessage builds a small RFC 5322 message.
func testMessage(from, to, subject, body string) []byte {
	return []byte(strings.ReplaceAll(fmt.Sprintf(`From: %s
To: %s
Subject: %s
Date: Mon, 02 Jan 2006 15:04:05 +0000
Message-ID: <%s.%d@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

%s
`, from, to, subject, strings.ReplaceAll(subject, " ", "-"), time.Now().UnixNano(), body), "\n", "\r\n"))
}

// imapCode returns the response code of a NO/BAD error, or "" if err is
// not an IMAP status error.
func imapCode(err error) imap.ResponseCode {
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		return imapErr.Code
	}
	return ""
}

func expectCode(t testing.TB, err error, code imap.ResponseCode, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want NO [%s]", what, code)
	}
	if got := imapCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

// fetchOne fetches one message by sequence number or UID.
func fetchOne(t testing.TB, c *imapclient.Client, set imap.NumSet, opts *imap.FetchOptions) *imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		t.Fatalf("fetch %v: %v", set, err)
	}
	if len(msgs) != 1 {
		t.Fatalf("fetch %v: got %d messages, want 1", set, len(msgs))
	}
	return msgs[0]
}

func hasFlagIn(flags []imap.Flag, f imap.Flag) bool { return hasFlag(flags, f) }

// updates collects a client's unilateral data on channels, so tests can
// wait for a server push with a deadline instead of sleeping.
type updates struct {
	exists   chan uint32
	expunges chan uint32
	fetches  chan *imapclient.FetchMessageBuffer
}

func newUpdates() (*updates, *imapclient.Options) {
	u := &updates{
		exists:   make(chan uint32, 64),
		expunges: make(chan uint32, 64),
		fetches:  make(chan *imapclient.FetchMessageBuffer, 64),
	}
	opts := &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { u.expunges <- seq },
		Fetch: func(m *imapclient.FetchMessageData) {
			if buf, err := m.Collect(); err == nil {
				u.fetches <- buf
			}
		},
	}}
	return u, opts
}

func waitFor[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// expectNone checks that nothing has been pushed on ch (the updates it
// guards are written before the tagged response the test already waited
// for, so no waiting is needed).
func expectNone[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	default:
	}
}

// countingMetrics records what the server reports.
type countingMetrics struct {
	opened, closed, panics, authFailed atomic.Int64
	throttled, delayed                 atomic.Int64
	mu                                 sync.Mutex
	commands                           map[string]int
	refused                            map[string]int
}

func (m *countingMetrics) SessionOpened() { m.opened.Add(1) }
func (m *countingMetrics) SessionClosed() { m.closed.Add(1) }
func (m *countingMetrics) Panic()         { m.panics.Add(1) }
func (m *countingMetrics) AuthFailed()    { m.authFailed.Add(1) }
func (m *countingMetrics) AuthThrottled() { m.throttled.Add(1) }
func (m *countingMetrics) CommandDelayed() {
	m.delayed.Add(1)
}
func (m *countingMetrics) ConnectionRefused(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refused == nil {
		m.refused = make(map[string]int)
	}
	m.refused[reason]++
}

// refusals returns a copy of the refused connections by reason.
func (m *countingMetrics) refusals() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.refused))
	for k, v := range m.refused {
		out[k] = v
	}
	return out
}
func (m *countingMetrics) Command(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.commands == nil {
		m.commands = make(map[string]int)
	}
	m.commands[name]++
}

// rawConn speaks IMAP by hand, for checks that need the exact bytes.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (e *testEnv) raw() *rawConn {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(waitLimit))
	c := &rawConn{t: e.t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("* OK")
	return c
}

func (c *rawConn) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, "%s\r\n", line); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// expect reads lines until one starts with prefix and returns it.
func (c *rawConn) expect(prefix string) string {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

// ok sends a tagged command, requires OK and returns the untagged lines.
func (c *rawConn) ok(cmd string) []string {
	c.t.Helper()
	tag := strings.Fields(cmd)[0]
	c.send(cmd)
	var untagged []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("%q: %v", cmd, err)
		}
		switch {
		case strings.HasPrefix(line, tag+" OK"):
			return untagged
		case strings.HasPrefix(line, tag+" "):
			c.t.Fatalf("%q: %q", cmd, line)
		default:
			untagged = append(untagged, line)
		}
	}
}

// inbox returns the user's INBOX with its counters.
func (e *testEnv) inbox(user string) *storage.MailboxStatus {
	e.t.Helper()
	st, err := e.store.MailboxStatus(context.Background(), user, storage.Inbox)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}
