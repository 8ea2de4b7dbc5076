package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/internal/testcert"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

const (
	alice = "alice@example.test"
	bob   = "bob@example.test"
	admin = "admin@example.test"

	relayUser = "relayuser"
	relayPass = "relaypass"
)

// --- the relay ---------------------------------------------------------

// relayed is one transaction the test relay saw.
type relayed struct {
	from   string
	rcpts  []string // accepted at RCPT
	tried  []string // every RCPT
	data   []byte   // nil unless DATA completed
	authed string   // the login, "" without AUTH
	tls    bool     // the connection was encrypted
	at     time.Time
}

// testRelay is a real SMTP server (go-smtp) on 127.0.0.1 whose behaviour
// the test switches between transactions.
type testRelay struct {
	t    *testing.T
	addr string

	mu sync.Mutex
	// mode: "accept" (SMTP), "hangup" (close before the greeting),
	// "garbage" (a greeting that is not SMTP).
	mode string
	// rcptReply answers RCPT for an address; n counts the tries so far
	// (1 for the first). nil error accepts.
	rcptReply map[string]func(n int) error
	rcptTries map[string]int
	mailErr   error
	authErr   error
	authTries int
	stallData bool // Data blocks until the test ends: the client must time out
	closeData bool // Data reads a little and drops the connection
	// dataGate, when set, holds every DATA until it is closed, then
	// accepts: a slow transfer. inData counts the DATAs that reached it.
	dataGate chan struct{}
	inData   int
	txs      []relayed
	hangups  int
	wire     []byte // every byte clients sent, as sent

	srv      *smtp.Server
	tlsCfg   *tls.Config // STARTTLS offered when set (and implicit TLS with implicit)
	implicit bool
	release  chan struct{}
}

// newTestRelay starts a relay; opts run before it listens.
func newTestRelay(t *testing.T, opts ...func(*testRelay)) *testRelay {
	t.Helper()
	r := &testRelay{
		t:         t,
		mode:      "accept",
		rcptReply: map[string]func(int) error{},
		rcptTries: map[string]int{},
		release:   make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() {
		close(r.release)
		r.stop()
	})
	return r
}

func (r *testRelay) serve(ln net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &relaySessionT{r: r, conn: c, tx: -1}, nil
	}))
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.TLSConfig = r.tlsCfg
	var l net.Listener = &switchListener{Listener: ln, r: r}
	if r.implicit {
		l = tls.NewListener(l, r.tlsCfg)
	}
	r.srv = srv
	go srv.Serve(l)
}

// stop closes the port: connecting is refused (relay down).
func (r *testRelay) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// start opens the same port again.
func (r *testRelay) start() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("relay: listen again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

func (r *testRelay) set(fn func(r *testRelay)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r)
}

func (r *testRelay) transactions() []relayed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayed(nil), r.txs...)
}

// delivered returns the transactions whose DATA completed.
func (r *testRelay) delivered() []relayed {
	var out []relayed
	for _, tx := range r.transactions() {
		if tx.data != nil {
			out = append(out, tx)
		}
	}
	return out
}

// dataCount is how many DATAs reached the gate.
func (r *testRelay) dataCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inData
}

func (r *testRelay) hangupCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hangups
}

func (r *testRelay) authCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.authTries
}

// switchListener serves the relay's non-SMTP modes before go-smtp sees
// the connection.
type switchListener struct {
	net.Listener
	r *testRelay
}

func (l *switchListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.r.mu.Lock()
		mode := l.r.mode
		if mode == "hangup" {
			l.r.hangups++
		}
		l.r.mu.Unlock()
		switch mode {
		case "hangup":
			c.Close()
			continue
		case "garbage":
			go func() {
				defer c.Close()
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
				io.Copy(io.Discard, io.LimitReader(c, 4096))
			}()
			continue
		}
		return &recordingConn{Conn: c, r: l.r}, nil
	}
}

// recordingConn keeps what the client sends in testRelay.wire, for tests
// of the exact command syntax (go-smtp's server unquotes addresses).
type recordingConn struct {
	net.Conn
	r *testRelay
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.r.mu.Lock()
	c.r.wire = append(c.r.wire, p[:n]...)
	c.r.mu.Unlock()
	return n, err
}

// wireText returns what clients have sent so far.
func (r *testRelay) wireText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.wire)
}

type relaySessionT struct {
	r      *testRelay
	conn   *smtp.Conn
	tx     int // index in r.txs of the current transaction, -1 for none
	authed string
}

func (s *relaySessionT) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *relaySessionT) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		s.r.mu.Lock()
		s.r.authTries++
		authErr := s.r.authErr
		s.r.mu.Unlock()
		if authErr != nil {
			return authErr
		}
		if username != relayUser || password != relayPass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.authed = username
		return nil
	}), nil
}

func (s *relaySessionT) Reset()        { s.tx = -1 }
func (s *relaySessionT) Logout() error { return nil }

func (s *relaySessionT) Mail(from string, _ *smtp.MailOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	_, isTLS := s.conn.TLSConnectionState()
	s.r.txs = append(s.r.txs, relayed{from: from, authed: s.authed, tls: isTLS, at: time.Now()})
	s.tx = len(s.r.txs) - 1
	return s.r.mailErr
}

func (s *relaySessionT) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	tx := &s.r.txs[s.tx]
	tx.tried = append(tx.tried, to)
	s.r.rcptTries[to]++
	if f := s.r.rcptReply[to]; f != nil {
		if err := f(s.r.rcptTries[to]); err != nil {
			return err
		}
	}
	tx.rcpts = append(tx.rcpts, to)
	return nil
}

func (s *relaySessionT) Data(rd io.Reader) error {
	s.r.mu.Lock()
	stall, drop, release, gate := s.r.stallData, s.r.closeData, s.r.release, s.r.dataGate
	if gate != nil {
		s.r.inData++
	}
	s.r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-release:
		}
	}
	switch {
	case stall:
		<-release
		io.Copy(io.Discard, rd)
		return errors.New("stalled")
	case drop:
		io.ReadFull(rd, make([]byte, 10))
		s.conn.Conn().Close()
		return errors.New("dropped")
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	s.r.txs[s.tx].data = data
	s.r.mu.Unlock()
	return nil
}

func reply(code int, enh smtp.EnhancedCode, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// always answers every try with err.
func always(err error) func(int) error { return func(int) error { return err } }

// failFirst answers the first n tries with err, then accepts.
func failFirst(n int, err error) func(int) error {
	return func(try int) error {
		if try <= n {
			return err
		}
		return nil
	}
}

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	server, client := testcert.New(t, "127.0.0.1")
	return server, client.RootCAs
}

// --- the queue under test ---------------------------------------------------

type env struct {
	t     *testing.T
	path  string
	store storage.Store
	relay *testRelay
	reg   *prometheus.Registry
	opts  Options
	q     *Queue
}

// newEnv opens a store with alice, bob and admin, starts a relay that
// accepts, and prepares (not starts) a queue with millisecond intervals.
func newEnv(t *testing.T, mutate func(*Options)) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "pochta.db"), relay: newTestRelay(t)}
	e.openStore()
	for _, u := range []string{alice, bob, admin} {
		if err := e.store.CreateUser(context.Background(), u, "secret", u == admin); err != nil {
			t.Fatal(err)
		}
	}
	e.opts = Options{
		Relay:               e.relay.addr,
		RelayTLS:            TLSNone,
		Username:            relayUser,
		Password:            relayPass,
		Hostname:            "mail.example.test",
		Postmaster:          "postmaster@example.test",
		Admins:              []string{admin},
		MaxAttempts:         10,
		RetryMin:            5 * time.Millisecond,
		RetryMax:            20 * time.Millisecond,
		HealthCheckInterval: 20 * time.Millisecond,
		DialTimeout:         2 * time.Second,
		CommandTimeout:      2 * time.Second,
		DataTimeout:         2 * time.Second,
		Location:            time.UTC,
		Logger:              testLogger(t),
	}
	if mutate != nil {
		mutate(&e.opts)
	}
	return e
}

func (e *env) openStore() {
	e.t.Helper()
	s, err := boltstore.Open(e.path, boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = s
	e.t.Cleanup(func() { s.Close() })
}

// start creates and starts the queue on a fresh registry.
func (e *env) start() *Queue {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	o := e.opts
	o.Store, o.Registerer = e.store, e.reg
	q, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.q = q
	e.t.Cleanup(func() { q.Close() })
	return q
}

// restart stops the queue, closes and reopens the store, and starts a new
// queue: what a daemon restart does.
func (e *env) restart() {
	e.t.Helper()
	if err := e.q.Close(); err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.openStore()
	e.start()
}

// send queues a message the way smtpd does: Sent copy with Bcc, relay copy
// without. It returns the queue entry's ID.
func (e *env) send(from string, to []string, subject string, extra ...string) uint64 {
	e.t.Helper()
	return e.deliver(&storage.Delivery{Sender: from, Source: storage.SourceUser}, from, to, subject, extra...)
}

// sendSystem queues mail from the trusted inbound port.
func (e *env) sendSystem(from string, to []string, subject string) uint64 {
	e.t.Helper()
	return e.deliver(&storage.Delivery{Source: storage.SourceSystem}, from, to, subject)
}

func (e *env) deliver(d *storage.Delivery, from string, to []string, subject string, extra ...string) uint64 {
	e.t.Helper()
	mid := fmt.Sprintf("<%s@example.test>", rand.Text())
	raw := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n%s\r\nHello from the test.\r\n",
		from, strings.Join(to, ", "), subject, mid, time.Now().Format(time.RFC1123Z), strings.Join(extra, ""))
	d.From, d.External, d.Subject, d.MessageID = from, to, subject, mid
	d.RelayCopy = &storage.NewMessage{Raw: []byte(raw)}
	if d.Sender != "" {
		d.SentCopy = &storage.NewMessage{Raw: []byte(raw)}
	}
	res, err := e.store.Deliver(context.Background(), d)
	if err != nil {
		e.t.Fatalf("deliver: %v", err)
	}
	return res.QueueID
}

func (e *env) entry(id uint64) *storage.QueueEntry {
	e.t.Helper()
	en, err := e.store.QueueEntry(context.Background(), id)
	if err != nil {
		e.t.Fatalf("queue entry %d: %v", id, err)
	}
	return en
}

// waitEntry waits until the entry satisfies cond.
func (e *env) waitEntry(id uint64, what string, cond func(*storage.QueueEntry) bool) *storage.QueueEntry {
	e.t.Helper()
	var last *storage.QueueEntry
	waitFor(e.t, fmt.Sprintf("entry %d: %s", id, what), func() bool {
		last = e.entry(id)
		return cond(last)
	}, func() string { return fmt.Sprintf("last state %+v", last) })
	return last
}

func statusIs(s string) func(*storage.QueueEntry) bool {
	return func(e *storage.QueueEntry) bool { return e.Status == s }
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			d := ""
			if detail != nil {
				d = ": " + detail()
			}
			t.Fatalf("timed out waiting for %s%s", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// inbox returns the messages of user's INBOX with their bodies.
func (e *env) inbox(user string) []*storage.Message {
	e.t.Helper()
	ctx := context.Background()
	mb, err := e.store.Mailbox(ctx, user, storage.Inbox)
	if err != nil {
		e.t.Fatal(err)
	}
	uids, err := e.store.UIDs(ctx, user, mb.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	msgs, err := e.store.Messages(ctx, user, mb.ID, uids, storage.LoadOptions{Body: true, Envelope: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return msgs
}

// subjects lists the subjects in user's INBOX that begin with prefix.
func (e *env) subjects(user, prefix string) []string {
	var out []string
	for _, m := range e.inbox(user) {
		if strings.HasPrefix(m.Envelope.Subject, prefix) {
			out = append(out, m.Envelope.Subject)
		}
	}
	return out
}

// waitSubjects waits until user's INBOX holds n messages whose subject
// begins with prefix.
func (e *env) waitSubjects(user, prefix string, n int) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d %q in %s's INBOX", n, prefix, user), func() bool {
		return len(e.subjects(user, prefix)) >= n
	}, func() string { return fmt.Sprintf("%q", e.subjects(user, "")) })
}

// metric reads one labelled value from the registry.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	e.t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// lintMetrics checks the registry's metrics against Prometheus' naming
// rules.
func (e *env) lintMetrics() {
	e.t.Helper()
	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range problems {
		e.t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

// dsn is a parsed delivery status notification.
type dsn struct {
	subject, from, reportType string
	text, status, headers     string
	parts                     []string // media types of the parts
}

// parseDSN reads a notice with go-message, as a mail client would.
func parseDSN(t *testing.T, raw []byte) dsn {
	t.Helper()
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("notice does not parse: %v\n%s", err, raw)
	}
	var d dsn
	d.subject, _ = ent.Header.Text("Subject")
	d.from = ent.Header.Get("From")
	mt, params, _ := ent.Header.ContentType()
	if mt != "multipart/report" {
		t.Fatalf("notice is %s, want multipart/report", mt)
	}
	d.reportType = params["report-type"]
	mr := ent.MultipartReader()
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("notice part: %v", err)
		}
		pmt, _, _ := p.Header.ContentType()
		d.parts = append(d.parts, pmt)
		b, _ := io.ReadAll(p.Body)
		switch pmt {
		case "text/plain":
			d.text = string(b)
		case "message/delivery-status":
			d.status = string(b)
		case "text/rfc822-headers":
			d.headers = string(b)
		}
	}
	return d
}

// notices returns the parsed notices in user's INBOX whose subject begins
// with prefix.
func (e *env) notices(user, prefix string) []dsn {
	e.t.Helper()
	var out []dsn
	for _, m := range e.inbox(user) {
		if strings.HasPrefix(m.Envelope.Subject, prefix) {
			out = append(out, parseDSN(e.t, m.Body))
		}
	}
	return out
}

// statusFields parses the per-recipient blocks of a message/delivery-status
// body.
func statusFields(t *testing.T, body string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for i, block := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(block))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
				fields[strings.ToLower(k)] = strings.TrimSpace(v)
			}
		}
		if i > 0 && len(fields) > 0 {
			out = append(out, fields)
		}
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
