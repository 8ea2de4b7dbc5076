// Package smtpd owns pochta's SMTP side: the submission ports (587 with
// STARTTLS, 465 with implicit TLS; AUTH PLAIN and LOGIN required) and the
// optional trusted inbound port (no AUTH, only peers in TrustedNetworks). It
// is built on github.com/emersion/go-smtp and stores mail only through
// storage.Store.
//
// Promises:
//   - 250 to DATA is sent only after storage.Deliver has returned nil, that is
//     after every copy (each local recipient's INBOX copy and the sender's
//     Sent copy) is committed and fsync'd in one transaction. Any failure
//     stores nothing and replies 4xx/5xx.
//   - On submission the envelope sender is the authenticated user's address;
//     the null sender is accepted only on the inbound port.
//   - Each recipient is routed by route: local domain and existing user ->
//     delivered here; anything else is refused at RCPT, never dropped.
//   - Headers are edited on the raw bytes: a Received field is prepended,
//     Message-ID and Date are added when missing, Bcc is removed from the
//     recipients' copies (kept in Sent). The body stays byte-exact except
//     that bare LF becomes CRLF.
//   - A client that disconnects during DATA, or whose message exceeds
//     MaxMessageSize, leaves nothing stored.
//   - A panic inside one session is recovered by go-smtp (421 and close) and
//     logged through Options.Logger; other sessions keep running.
//   - One log line per mail transaction (sender, recipient count, size,
//     result); never message bodies or passwords.
//   - Abuse limits (package abuse, shared with imapd): failed AUTHs are
//     slowed and then refused per client address (421 4.7.0, and the
//     connection is closed); connections over Options.Connections get
//     421 4.7.0 at connect; each session's commands are paced to
//     Options.CommandRate by reading the next command later, never by
//     failing it; a command line, a step of an AUTH exchange or a whole
//     DATA not complete within ReadTimeout gets 421 and is closed, however
//     the client trickles its bytes (abuse.Ending); connections not yet
//     logged in hold at most half of the total, the oldest of the biggest
//     holder evicted (421) when a newcomer needs room. Passwords are
//     checked through package auth (cache, bounded pool, pacing).
//   - The submission ports relay nothing for an unauthenticated client
//     (MAIL before AUTH is 530); the inbound port serves only
//     TrustedNetworks.
//   - With Options.Trace, the sessions of traced users are logged line by
//     line, credentials and message text masked (package trace).
//
// Concurrency: every accepted connection is wrapped in a trackedConn so that
// Shutdown can end idle connections (by moving their read deadline into the
// past, so that go-smtp's own goroutine, between commands, says "421 4.3.2
// ... shutting down" through the trackedConn and closes; see shutdown.go)
// while connections with a transaction open (MAIL accepted, not yet reset
// by the end of DATA or RSET) finish it first. Only go-smtp's goroutine of
// a connection ever writes to it.
//
// Each connection is served by its own go-smtp Server, made from the
// listener's settings: go-smtp's only view of the cleartext under TLS
// (including after STARTTLS, which it performs itself) is Server.Debug, one
// writer per Server, and the protocol trace needs one per connection. A
// go-smtp Server is a small struct, and its Serve returns as soon as it has
// started the connection's goroutine.
package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/trace"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultMaxMessageSize = 25 << 20
	DefaultMaxRecipients  = 100
	DefaultReadTimeout    = 5 * time.Minute
	DefaultWriteTimeout   = time.Minute
)

// deliverTimeout bounds one storage.Deliver call; it is not tied to the
// client's connection, so a message whose DATA arrived completely is stored
// even if the client hangs up while we commit.
const deliverTimeout = time.Minute

// refuseTimeout bounds answering a refused connection (the 554 or 421
// greeting, and on the implicit-TLS port the handshake before it).
const refuseTimeout = 10 * time.Second

// maxRefusing bounds the goroutines answering refused connections at once;
// beyond it a refused connection is closed without a reply, so a flood of
// connections cannot make the refusals themselves the resource it exhausts.
const maxRefusing = 64

// Options configure a Server.
type Options struct {
	// Hostname is the server's name in the greeting and Received fields, and
	// the right-hand side of the Message-IDs it creates. Required.
	Hostname string
	// Domains are the local domains: recipients there are delivered here.
	// Required (at least one). Matched case-insensitively.
	Domains []string
	// Store is where messages go. Required.
	Store storage.Store
	// TLSConfig serves STARTTLS on submission and the implicit TLS of
	// submissions. Required for ServeSubmissions, and for ServeSubmission
	// unless AllowInsecureAuth is set.
	TLSConfig *tls.Config
	// MaxMessageSize bounds a message in bytes (SIZE at MAIL and the DATA
	// itself); 0 means DefaultMaxMessageSize.
	MaxMessageSize int64
	// SpoolDir receives, unlinked at once, the part of a message past
	// message.SpoolAfter bytes, which is then mapped rather than held on
	// the heap; "" keeps every message in memory.
	SpoolDir string
	// MaxRecipients bounds RCPT commands per transaction; 0 means
	// DefaultMaxRecipients.
	MaxRecipients int
	// AllowInsecureAuth offers and accepts AUTH on connections without TLS
	// (development and tests only).
	AllowInsecureAuth bool
	// TrustedNetworks are the peers the inbound port accepts; everyone else
	// is refused at connect. Empty means nobody.
	TrustedNetworks []netip.Prefix
	// QueueEnabled says relaying is configured. Until the queue exists,
	// external recipients then get a temporary 451 instead of 550.
	QueueEnabled bool
	// Logger receives the log lines; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives the server's counts; nil means none.
	Metrics Metrics
	// ReadTimeout and WriteTimeout bound each read of a command (or of a
	// whole DATA) and each reply; 0 means DefaultReadTimeout and
	// DefaultWriteTimeout. ReadTimeout is the idle timeout ([limits]
	// smtp_idle_timeout): a client silent that long gets 421 and is closed.
	ReadTimeout, WriteTimeout time.Duration
	// Logins throttles failed AUTHs per client address and account; share
	// one with the IMAP server. Nil means no throttling. Used only to make
	// the Authenticator when Auth is nil.
	Logins *abuse.Logins
	// Auth checks passwords (throttle, login cache, bounded checker pool);
	// share one with the IMAP server. Nil means one made from Store and
	// Logins with package auth's defaults.
	Auth *auth.Authenticator
	// Connections bounds open connections per client address and in total;
	// share one with the IMAP server. Nil means no limit.
	Connections *abuse.Connections
	// CommandRate paces each session's commands on the submission ports;
	// the zero Rate means no limit. The inbound port is not paced: its
	// peers are trusted, and typically applications sending in bulk.
	CommandRate abuse.Rate
	// Trace logs the submission sessions of the users it traces ([log]
	// trace_users) line by line; nil traces nobody. The inbound port has
	// no users and is never traced.
	Trace *trace.Tracer
}

// Metrics receives the server's counts; package metrics adapts it to
// Prometheus. Implementations must be safe for concurrent use and must not
// block. Reasons are short fixed words, never addresses.
type Metrics interface {
	// Connection counts one accepted connection on a listener
	// ("submission", "submissions", "inbound").
	Connection(listener string)
	// Received counts one stored message of size bytes that went to
	// localCopies local INBOXes.
	Received(size int, localCopies int)
	// Rejected counts one refused command by reason.
	Rejected(reason string)
	// AuthFailed counts one failed AUTH.
	AuthFailed()
	// Panic counts one recovered panic.
	Panic()
	// ConnectionRefused counts one connection refused at connect, by
	// reason (abuse.RefusedPerAddress, abuse.RefusedTotal, "not_trusted").
	ConnectionRefused(reason string)
	// AuthThrottled counts one AUTH slowed down or refused by Logins.
	AuthThrottled()
	// CommandDelayed counts one command read late because of CommandRate.
	CommandDelayed()
}

type noMetrics struct{}

func (noMetrics) Connection(string)        {}
func (noMetrics) Received(int, int)        {}
func (noMetrics) Rejected(string)          {}
func (noMetrics) AuthFailed()              {}
func (noMetrics) Panic()                   {}
func (noMetrics) ConnectionRefused(string) {}
func (noMetrics) AuthThrottled()           {}
func (noMetrics) CommandDelayed()          {}

// listenerKind says which port a connection came in on.
type listenerKind int

const (
	kindSubmission listenerKind = iota + 1
	kindSubmissions
	kindInbound
)

func (k listenerKind) String() string {
	switch k {
	case kindSubmission:
		return "submission"
	case kindSubmissions:
		return "submissions"
	case kindInbound:
		return "inbound"
	}
	return "unknown"
}

// Server serves SMTP on any number of listeners. Create it with New.
type Server struct {
	opts    Options
	auth    *auth.Authenticator
	log     *slog.Logger
	metrics Metrics
	domains map[string]bool

	mu        sync.Mutex
	closing   bool
	listeners []net.Listener
	conns     map[*trackedConn]struct{}
	refusals  sync.WaitGroup // goroutines answering refused connections
	refusing  int            // how many of them run; under mu
}

// New checks opts, fills in defaults and returns a Server that is not yet
// listening.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("smtpd: Options.Store is required")
	}
	opts.Hostname = strings.TrimSuffix(strings.TrimSpace(opts.Hostname), ".")
	if opts.Hostname == "" {
		return nil, errors.New("smtpd: Options.Hostname is required")
	}
	if len(opts.Domains) == 0 {
		return nil, errors.New("smtpd: Options.Domains needs at least one local domain")
	}
	domains := make(map[string]bool, len(opts.Domains))
	for _, d := range opts.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if !validDomain(d) {
			return nil, fmt.Errorf("smtpd: invalid local domain %q", d)
		}
		domains[d] = true
	}
	if opts.MaxMessageSize < 0 || opts.MaxRecipients < 0 {
		return nil, errors.New("smtpd: MaxMessageSize and MaxRecipients must not be negative")
	}
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.MaxRecipients == 0 {
		opts.MaxRecipients = DefaultMaxRecipients
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var m Metrics = noMetrics{}
	if opts.Metrics != nil {
		m = opts.Metrics
	}
	authn := opts.Auth
	if authn == nil {
		authn = auth.New(auth.Options{Check: opts.Store.Authenticate, Logins: opts.Logins})
	}
	opts.TLSConfig = watchHandshakes(opts.TLSConfig)
	return &Server{
		opts:    opts,
		auth:    authn,
		log:     log.With("component", "smtpd"),
		metrics: m,
		domains: domains,
		conns:   make(map[*trackedConn]struct{}),
	}, nil
}

// ServeSubmission serves the submission port (RFC 6409) on l, a plain TCP
// listener: STARTTLS is offered and AUTH is required before MAIL. It
// returns nil once Shutdown has been called.
func (s *Server) ServeSubmission(l net.Listener) error {
	if s.opts.TLSConfig == nil && !s.opts.AllowInsecureAuth {
		l.Close()
		return errors.New("smtpd: submission needs Options.TLSConfig (or AllowInsecureAuth)")
	}
	return s.serve(kindSubmission, l)
}

// ServeSubmissions serves the submissions port (implicit TLS, RFC 8314) on
// l. l is a plain TCP listener: ServeSubmissions wraps it with
// tls.NewListener itself, so the TLS handshake runs on each connection's
// goroutine under the read timeout. AUTH is required before MAIL. It
// returns nil once Shutdown has been called.
func (s *Server) ServeSubmissions(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		l.Close()
		return errors.New("smtpd: submissions needs Options.TLSConfig")
	}
	return s.serve(kindSubmissions, l)
}

// ServeInbound serves the trusted inbound port on l: no AUTH is offered,
// any envelope sender (also the null sender) is accepted, and peers outside
// Options.TrustedNetworks get 554 5.7.1 at connect. Messages are delivered
// without a Sent copy (source "system"). It returns nil once Shutdown has
// been called.
func (s *Server) ServeInbound(l net.Listener) error {
	return s.serve(kindInbound, l)
}

func (s *Server) serve(kind listenerKind, l net.Listener) error {
	var ln net.Listener = &trackedListener{Listener: l, srv: s, kind: kind}
	if kind == kindSubmissions {
		// go-smtp does the handshake itself (on the connection's goroutine,
		// under the read timeout) when it sees a *tls.Conn; with the
		// connection already TLS, STARTTLS is not advertised.
		ln = tls.NewListener(ln, s.opts.TLSConfig)
	}
	errorLog := errorLog{log: s.log.With("listener", kind.String()), metrics: s.metrics}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()

	s.log.Info("smtp listening", "listener", kind.String(), "addr", l.Addr().String())
	var delay time.Duration // after a temporary accept error
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil // Shutdown closed the listener
			}
			var temp interface{ Temporary() bool }
			if errors.As(err, &temp) && temp.Temporary() && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("smtp accept failed; retrying", "listener", kind.String(), "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("smtpd: serving %s on %s: %w", kind, l.Addr(), err)
		}
		delay = 0
		s.serveConn(kind, c, errorLog)
	}
}

// serveConn starts serving one accepted connection on its own go-smtp
// Server (see the package comment).
func (s *Server) serveConn(kind listenerKind, c net.Conn, errorLog errorLog) {
	tc := trackedOf(c)
	var tr *trace.Session
	if kind != kindInbound && tc != nil {
		tr = s.opts.Trace.Session(trace.SMTP, remoteIP(c).String())
		tc.trace = tr
	}
	gs := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(kind, c), nil
	}))
	gs.Domain = s.opts.Hostname
	gs.MaxMessageBytes = s.opts.MaxMessageSize
	gs.MaxRecipients = s.opts.MaxRecipients
	gs.ReadTimeout = s.opts.ReadTimeout
	gs.WriteTimeout = s.opts.WriteTimeout
	gs.ErrorLog = errorLog
	gs.Debug = tr.Writer()
	switch kind {
	case kindSubmission:
		gs.TLSConfig = s.opts.TLSConfig
		gs.AllowInsecureAuth = s.opts.AllowInsecureAuth
	case kindSubmissions:
		gs.TLSConfig = s.opts.TLSConfig
	}

	if t, ok := c.(*tls.Conn); ok && tc != nil {
		tc.implicitTLS = t
	}

	// Under mu, so that Shutdown either finds the connection with its
	// Server (and waits for it) or has already stopped serving. A
	// connection refused here is closed after mu is released: closing a
	// tracked connection untracks it, which takes mu (closing it under mu
	// hung the accept loop, and with it Shutdown, for good).
	s.mu.Lock()
	if s.closing || tc == nil {
		s.mu.Unlock()
		c.Close()
		return
	}
	tc.gs = gs
	// Serve hands c to a goroutine of its own and returns at the second
	// Accept; its error says only that oneConn has nothing more.
	_ = gs.Serve(&oneConn{c: c, addr: c.LocalAddr()})
	s.mu.Unlock()
}

// oneConn is a listener that yields one connection, then reports itself
// closed.
type oneConn struct {
	c    net.Conn
	addr net.Addr
}

func (o *oneConn) Accept() (net.Conn, error) {
	c := o.c
	if c == nil {
		return nil, net.ErrClosed
	}
	o.c = nil
	return c, nil
}

func (o *oneConn) Close() error   { return nil }
func (o *oneConn) Addr() net.Addr { return o.addr }

// isLocalDomain reports whether domain (lower-case) is one of ours.
func (s *Server) isLocalDomain(domain string) bool {
	return s.domains[domain]
}

// trusted reports whether addr is inside Options.TrustedNetworks.
func (s *Server) trusted(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, p := range s.opts.TrustedNetworks {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// refuse answers a connection with reply instead of the greeting and hangs
// up (RFC 5321 3.1: a server may answer the connection with 554, or with
// 421 when it is temporarily unable to serve). On the implicit-TLS port the
// reply follows a TLS handshake, so that the client can show it. reason
// labels the metric.
func (s *Server) refuse(c net.Conn, kind listenerKind, addr netip.Addr, reason, reply string) {
	s.metrics.ConnectionRefused(reason)
	s.log.Info("smtp connection refused", "listener", kind.String(), "remote", addr.String(), "reason", reason)
	s.mu.Lock()
	if s.refusing >= maxRefusing {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.refusing++
	s.refusals.Add(1)
	s.mu.Unlock()
	go func() {
		defer func() {
			c.Close()
			s.mu.Lock()
			s.refusing--
			s.mu.Unlock()
			s.refusals.Done()
		}()
		c.SetDeadline(time.Now().Add(refuseTimeout))
		if kind == kindSubmissions {
			tc := tls.Server(c, s.opts.TLSConfig)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
		}
		io.WriteString(c, reply)
	}()
}

// track registers an accepted connection so Shutdown can drain it; release
// gives its slot in Options.Connections back when it closes.
func (s *Server) track(tc *trackedConn, kind listenerKind, release func()) *trackedConn {
	tc.release = release
	if kind != kindSubmissions {
		tc.replyTo = tc.Conn // cleartext until STARTTLS
	}
	if kind != kindInbound {
		tc.rate = abuse.NewBucket(s.opts.CommandRate, nil)
	}
	s.mu.Lock()
	s.conns[tc] = struct{}{}
	closing := s.closing
	s.mu.Unlock()
	if closing {
		tc.drain()
	}
	return tc
}

func (s *Server) untrack(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// trackedListener tracks accepted connections and, on the inbound port,
// refuses untrusted peers before go-smtp greets them.
type trackedListener struct {
	net.Listener
	srv  *Server
	kind listenerKind
}

func (l *trackedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteIP(c)
		if l.kind == kindInbound && !l.srv.trusted(addr) {
			l.srv.refuse(c, l.kind, addr, "not_trusted",
				fmt.Sprintf("554 5.7.1 %s access denied: %s is not a trusted network\r\n", l.srv.opts.Hostname, addr))
			continue
		}
		// The inbound port has no login: its trusted peers are never
		// counted as strangers. A submission connection is one until AUTH
		// succeeds, and may be evicted while it is (abuse.Connections).
		tc := &trackedConn{Conn: c, srv: l.srv}
		var release func()
		var why string
		if l.kind == kindInbound {
			release, why = l.srv.opts.Connections.Open(addr)
		} else {
			tc.slot, why = l.srv.opts.Connections.Admit(addr, tc.end)
			if tc.slot != nil {
				release = tc.slot.Release
			}
		}
		if release == nil {
			l.srv.refuse(c, l.kind, addr, why,
				fmt.Sprintf("421 4.7.0 %s too many connections (%s); try again later\r\n", l.srv.opts.Hostname, connectionLimitText(why)))
			continue
		}
		l.srv.metrics.Connection(l.kind.String())
		return l.srv.track(tc, l.kind, release), nil
	}
}

// connectionLimitText says which connection limit was hit, for the reply.
func connectionLimitText(reason string) string {
	if reason == abuse.RefusedPerAddress {
		return "from your address"
	}
	return "in total"
}

// trackedConn lets Shutdown end a connection between commands without
// writing to it from a second goroutine: once draining, every read deadline
// go-smtp sets is moved into the past unless a transaction is open, so
// go-smtp's next read times out and it answers 421 and closes.
//
// It also keeps the abuse limits that work between commands: go-smtp arms
// the read deadline once before each command line it reads (and nowhere
// during DATA), so SetReadDeadline is where the command rate is kept and
// where a connection marked by hangUp is closed, after the reply that
// explains why has been flushed.
type trackedConn struct {
	net.Conn
	srv     *Server
	release func()        // gives back the connection's slot; idempotent
	rate    *abuse.Bucket // nil without a command rate
	gs      *smtp.Server  // the go-smtp Server of this connection; under srv.mu
	trace   *trace.Session
	slot    *abuse.Slot // the connection's place in Options.Connections; nil on the inbound port
	// ending makes a read timeout (or an eviction) final: go-smtp would
	// take a timeout inside AUTH as a pause and read on under a fresh
	// deadline, so a client trickling bytes kept its connection forever.
	// Once ending, every read fails at once and go-smtp's main loop
	// answers "421 4.4.2 Idle timeout" and closes.
	ending abuse.Ending

	mu        sync.Mutex
	busy      bool // a mail transaction is open
	draining  bool
	hangingUp bool
	// The shutdown reply (shutdown.go): where go-smtp's replies go in
	// cleartext (nil while unknown, during and after a TLS handshake
	// until it is learnt), the implicit-TLS connection whose handshake
	// makes it known, and whether the next command line is awaited with
	// nothing of it read yet.
	replyTo     net.Conn
	implicitTLS *tls.Conn
	atBoundary  bool
}

var pastDeadline = time.Unix(1, 0)

// errHungUp ends a session whose connection hangUp closed; it wraps
// net.ErrClosed so go-smtp ends the session quietly.
var errHungUp = fmt.Errorf("smtpd: connection closed after a refusal: %w", net.ErrClosed)

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	// Waiting here delays reading the next command: a fast client is
	// slowed to the rate, never refused.
	if wait := c.rate.Take(1); wait > 0 {
		c.srv.metrics.CommandDelayed()
		time.Sleep(wait)
		t = t.Add(wait)
	}
	c.mu.Lock()
	if c.hangingUp {
		c.mu.Unlock()
		c.Conn.Close()
		return errHungUp
	}
	if c.commandAwaited() {
		c.mu.Unlock()
		return c.sayShuttingDown() // Shutdown is waiting for this connection
	}
	if c.draining && !c.busy {
		t = pastDeadline
	}
	defer c.mu.Unlock()
	return c.Conn.SetReadDeadline(c.ending.Deadline(t))
}

// end ends the connection for reason: go-smtp's read in progress (or its
// next one) times out, and it answers 421 and closes.
func (c *trackedConn) end(reason string) {
	if c.ending.End(reason) {
		c.srv.log.Info("smtp connection ended", "remote", remoteIP(c.Conn).String(), "reason", reason)
		c.Conn.SetReadDeadline(abuse.PastDeadline)
	}
}

// hangUp closes the connection before go-smtp reads the next command, that
// is after the reply being written now. A nil receiver is allowed.
func (c *trackedConn) hangUp() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.hangingUp = true
	c.mu.Unlock()
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *trackedConn) Close() error {
	c.srv.untrack(c)
	c.release()
	return c.Conn.Close()
}

func (c *trackedConn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.busy {
		c.Conn.SetReadDeadline(pastDeadline)
	}
}

// setBusy marks a mail transaction as open (or not). A nil receiver is
// allowed so sessions on foreign connections still work.
func (c *trackedConn) setBusy(busy bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = busy
	if !busy && c.draining {
		c.Conn.SetReadDeadline(pastDeadline)
	}
}

// tracer returns the connection's protocol trace, nil when there is none.
// A nil receiver is allowed.
func (c *trackedConn) tracer() *trace.Session {
	if c == nil {
		return nil
	}
	return c.trace
}

// trackedOf finds our trackedConn under go-smtp's connection (which may be
// a *tls.Conn after STARTTLS or on the implicit TLS port).
func trackedOf(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

// remoteIP returns the peer's IP, or the zero Addr for non-IP transports.
func remoteIP(c net.Conn) netip.Addr {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		c = tc.Conn
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// errorLog adapts go-smtp's Printf logger to slog. go-smtp reports
// recovered session panics ("panic serving ...") and connection errors
// (failed TLS handshakes, resets) through it.
type errorLog struct {
	log     *slog.Logger
	metrics Metrics
}

func (e errorLog) Printf(format string, v ...any) { e.emit(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.emit(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) emit(msg string) {
	if strings.HasPrefix(msg, "panic") {
		e.metrics.Panic()
		e.log.Error("smtp session panicked; recovered, connection closed", "detail", msg)
		return
	}
	e.log.Debug("smtp connection error", "detail", msg)
}

// loggedIn marks the connection's session as logged in: it is no longer
// a stranger's and cannot be evicted. A nil receiver is allowed.
func (c *trackedConn) loggedIn() {
	if c != nil {
		c.slot.LoggedIn()
	}
}
