// Package imapd is pochta's IMAP server: go-imap v2's imapserver over the
// storage.Store interface. It owns the IMAP sessions and the in-memory state
// shared by the sessions that have a mailbox selected; everything persistent
// lives in storage.
//
// Promises:
//   - A user only ever reaches their own mailboxes: every storage call
//     carries the logged-in address, and mailbox names are names within that
//     account, never paths.
//   - Sequence numbers stay right across sessions. Each selected mailbox has
//     one shared UID list and an imapserver.MailboxTracker; each session sees
//     it through its own imapserver.SessionTracker, so an expunge in one
//     session renumbers another session's view only when that session is
//     told (NOOP, IDLE, or the end of a command that allows it).
//   - Changes made anywhere (another IMAP session, an SMTP delivery, the
//     queue) reach selected sessions through storage events, in commit order.
//   - Only capabilities that are implemented are advertised (see caps).
//   - Authentication (LOGIN, AUTHENTICATE PLAIN) is refused without TLS unless
//     Options.AllowInsecureAuth is set.
//   - A panic while serving one connection is recovered, logged and counted,
//     and closes only that connection.
//   - Abuse limits (package abuse, shared with smtpd): failed logins are
//     slowed and then refused per client address (NO [UNAVAILABLE]);
//     connections over Options.Connections get "* BYE" instead of the
//     greeting; each session's commands are paced to Options.CommandRate by
//     reading the next command later, never by failing it; a logged-in
//     client silent for IdleTimeout outside IDLE, or for IDLETimeout in
//     IDLE, and any client whose command is not read within
//     CommandTimeout (trickled or not), gets "* BYE" and is disconnected;
//     connections not yet logged in hold at most half of the total, the
//     oldest of the biggest holder evicted when a newcomer needs room
//     (limits.go). Passwords are checked through package auth (cache,
//     bounded pool, pacing).
//   - With Options.Trace, the sessions of traced users are logged line by
//     line, credentials and message literals masked (package trace).
//
// Each connection is served by its own imapserver.Server, made from one
// set of options: go-imap's only view of the cleartext under TLS (including
// after STARTTLS, which it performs itself) is Options.DebugWriter, one
// writer per imapserver.Server, and the protocol trace needs one per
// connection. imapserver.Server is a small struct, and its Serve returns as
// soon as it has started the connection's goroutine.
//
// Concurrency rules (the registry in registry.go):
//   - storage calls the event listener on its writer goroutine, in commit
//     order. The listener only takes short mutexes and queues tracker updates;
//     it never does I/O and never waits for a session.
//   - Lock order: registry.mu, then sharedMailbox.mu, then go-imap's tracker
//     mutexes. Sequence numbers are encoded and decoded only while holding
//     sharedMailbox.mu, so the UID list and the trackers agree.
//   - A session's own writes are tagged with storage.WithOrigin(ctx, origin),
//     a (node, session) id unique to the session,
//     so that flag changes are not echoed back to it (it writes the FETCH
//     response itself). Expunges and new messages are queued to every session,
//     including the writer, and reach the client through the tracker.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/trace"
)

// DefaultMaxMessageSize is the APPEND limit used when Options.MaxMessageSize
// is zero; it matches the SMTP default ([smtp] max_message_size).
const DefaultMaxMessageSize = 25 << 20

// appendGrace bounds how long Close lets APPENDs in progress finish
// before it says BYE: a message whose literal is arriving is stored, not
// cut off.
const appendGrace = 30 * time.Second

// beginAppend registers an APPEND in progress; false once Close started.
func (s *Server) beginAppend() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.appends++
	return true
}

// endAppend ends what beginAppend began.
func (s *Server) endAppend() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appends--
	if s.appends == 0 && s.appendsIn != nil {
		close(s.appendsIn)
		s.appendsIn = nil
	}
}

// byeTimeout bounds how long Close waits for the BYE of every connection.
const byeTimeout = 5 * time.Second

// Options configure a Server.
type Options struct {
	// Store holds the mail. Required.
	Store storage.Store
	// TLSConfig is used for STARTTLS on Serve and for ServeTLS. Without it
	// STARTTLS is not offered and ServeTLS fails.
	TLSConfig *tls.Config
	// AllowInsecureAuth allows LOGIN and AUTHENTICATE without TLS
	// (development and tests only).
	AllowInsecureAuth bool
	// MaxMessageSize is the APPEND limit in bytes, advertised as
	// APPENDLIMIT (RFC 7889); 0 means DefaultMaxMessageSize.
	MaxMessageSize int64
	// Logger receives the server's log lines; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives counts (sessions, commands, panics); nil means none.
	Metrics Metrics
	// IdleTimeout is how long a logged-in client may be silent between
	// commands outside IDLE ([limits] imap_idle_timeout); 0 means
	// DefaultIdleTimeout. Before login go-imap's 30 s applies.
	IdleTimeout time.Duration
	// CommandTimeout bounds the wait for a command before login and the
	// reading of each command once it has begun ([limits]
	// imap_command_timeout); 0 means DefaultCommandTimeout. Its literals
	// may extend a command to 5 minutes in all, never more.
	CommandTimeout time.Duration
	// IDLETimeout is how long one IDLE command may wait for DONE; 0 means
	// DefaultIDLETimeout, or IdleTimeout if that is longer.
	IDLETimeout time.Duration
	// Logins throttles failed logins per client address and account; share
	// one with the SMTP server. Nil means no throttling.
	Logins *abuse.Logins
	// Auth checks passwords (throttle, login cache, bounded checker pool);
	// share one with the SMTP server. Nil means one made from Store and
	// Logins with package auth's defaults.
	Auth *auth.Authenticator
	// Connections bounds open connections per client address and in total;
	// share one with the SMTP server. Nil means no limit.
	Connections *abuse.Connections
	// CommandRate paces each session's commands; the zero Rate means no
	// limit.
	CommandRate abuse.Rate
	// Trace logs the sessions of the users it traces ([log] trace_users)
	// line by line; nil traces nobody.
	Trace *trace.Tracer
}

// Metrics receives the server's counts; cmd/pochta adapts it to Prometheus.
// Implementations must be safe for concurrent use and must not block.
type Metrics interface {
	// SessionOpened and SessionClosed bracket every connection.
	SessionOpened()
	SessionClosed()
	// Command counts one command by name ("FETCH", "UID FETCH", ...).
	Command(name string)
	// Panic counts one recovered panic.
	Panic()
	// AuthFailed counts one failed LOGIN or AUTHENTICATE.
	AuthFailed()
	// ConnectionRefused counts one connection refused at connect, by
	// reason (abuse.RefusedPerAddress, abuse.RefusedTotal).
	ConnectionRefused(reason string)
	// AuthThrottled counts one login slowed down or refused by Logins.
	AuthThrottled()
	// CommandDelayed counts one command read late because of CommandRate.
	CommandDelayed()
}

type noMetrics struct{}

func (noMetrics) SessionOpened()           {}
func (noMetrics) SessionClosed()           {}
func (noMetrics) Command(name string)      {}
func (noMetrics) Panic()                   {}
func (noMetrics) AuthFailed()              {}
func (noMetrics) ConnectionRefused(string) {}
func (noMetrics) AuthThrottled()           {}
func (noMetrics) CommandDelayed()          {}

// Server is pochta's IMAP server. It is safe for concurrent use.
type Server struct {
	store       storage.Store
	tlsConfig   *tls.Config
	appendLimit uint32
	log         *slog.Logger
	metrics     Metrics
	imapOpts    imapserver.Options // each connection's imapserver.Server
	trace       *trace.Tracer
	reg         *registry
	sessionIDs  atomic.Uint64 // issues the sessions' storage.Origin

	// The abuse limits (limits.go).
	auth           *auth.Authenticator
	conns          *abuse.Connections
	commandRate    abuse.Rate
	idleTimeout    time.Duration
	idleCmdTimeout time.Duration // in IDLE
	commandTimeout time.Duration

	// ctx is the parent of every storage call; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	appends   int           // APPENDs in progress
	appendsIn chan struct{} // closed when appends drops to 0 during Close
	listeners map[net.Listener]struct{}
	sessions  map[*session]string       // the logged-in user's address, or ""
	open      map[*guardedConn]struct{} // connections not yet closed
	refusing  int                       // goroutines answering refused connections
}

// caps lists what go-imap implements server-side and this package backs.
// go-imap adds by itself, for IMAP4rev1 clients: SASL-IR, LITERAL-,
// UNSELECT, ENABLE, IDLE, UTF8=ACCEPT, AUTH=PLAIN (or LOGINDISABLED),
// STARTTLS when possible, and APPENDLIMIT=n because session implements
// imapserver.SessionAppendLimit. The rest must be listed here, or IMAP4rev1
// clients such as Outlook never use them.
func caps() imap.CapSet {
	return imap.CapSet{
		imap.CapIMAP4rev1:    {},
		imap.CapIMAP4rev2:    {},
		imap.CapLiteralPlus:  {}, // RFC 7888
		imap.CapNamespace:    {}, // RFC 2342
		imap.CapUIDPlus:      {}, // RFC 4315: APPENDUID, COPYUID, UID EXPUNGE
		imap.CapMove:         {}, // RFC 6851
		imap.CapESearch:      {}, // RFC 4731
		imap.CapSearchRes:    {}, // RFC 5182: SEARCH RETURN (SAVE) and "$"
		imap.CapListExtended: {}, // RFC 5258
		imap.CapListStatus:   {}, // RFC 5819
		imap.CapSpecialUse:   {}, // RFC 6154
		imap.CapChildren:     {}, // RFC 3348
		imap.CapStatusSize:   {}, // RFC 8438
		imap.CapBinary:       {}, // RFC 3516
		imap.CapSASLIR:       {}, // RFC 4959 (always on in go-imap)
		imap.CapUnselect:     {}, // RFC 3691 (always on in go-imap)
		imap.CapEnable:       {}, // RFC 5161 (always on in go-imap)
		imap.CapIdle:         {}, // RFC 2177 (always on in go-imap)
		imap.CapLiteralMinus: {}, // RFC 7888 (always on in go-imap)
		imap.CapUTF8Accept:   {}, // RFC 6855 (always on in go-imap)
	}
}

// New creates a server and subscribes it to the store's events. It does not
// listen; call Serve or ServeTLS.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("imapd: Options.Store is required")
	}
	limit := opts.MaxMessageSize
	if limit <= 0 {
		limit = DefaultMaxMessageSize
	}
	if limit > math.MaxUint32 {
		limit = math.MaxUint32
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "imap")
	metrics := opts.Metrics
	if metrics == nil {
		metrics = noMetrics{}
	}
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	idleCmd := opts.IDLETimeout
	if idleCmd <= 0 {
		idleCmd = max(DefaultIDLETimeout, idle)
	}
	authn := opts.Auth
	if authn == nil {
		authn = auth.New(auth.Options{Check: opts.Store.Authenticate, Logins: opts.Logins})
	}
	cmdTimeout := opts.CommandTimeout
	if cmdTimeout <= 0 {
		cmdTimeout = DefaultCommandTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		store:          opts.Store,
		tlsConfig:      opts.TLSConfig,
		appendLimit:    uint32(limit),
		log:            log,
		metrics:        metrics,
		auth:           authn,
		conns:          opts.Connections,
		commandRate:    opts.CommandRate,
		idleTimeout:    idle,
		idleCmdTimeout: idleCmd,
		commandTimeout: cmdTimeout,
		ctx:            ctx,
		cancel:         cancel,
		listeners:      make(map[net.Listener]struct{}),
		sessions:       make(map[*session]string),
		open:           make(map[*guardedConn]struct{}),
		trace:          opts.Trace,
	}
	s.reg = newRegistry(s)
	s.imapOpts = imapserver.Options{
		NewSession:   s.newSession,
		Caps:         caps(),
		Logger:       imapLogger{log: log, metrics: metrics},
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: opts.AllowInsecureAuth,
	}
	opts.Store.Listen(s.reg.handleEvent)
	return s, nil
}

// Serve accepts connections on l (the STARTTLS port) until Close. It returns
// nil after Close.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(&limitedListener{Listener: l, srv: s})
}

// ServeTLS accepts implicit-TLS connections on l (the IMAPS port, RFC 8314)
// until Close. It returns nil after Close.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.tlsConfig == nil {
		l.Close()
		return errors.New("imapd: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(tls.NewListener(&limitedListener{Listener: l, srv: s, implicitTLS: true}, s.tlsConfig))
}

func (s *Server) serve(l net.Listener) error {
	if !s.addListener(l) {
		// Close came first (a shutdown racing the start): as after Close,
		// there is nothing to report.
		l.Close()
		return nil
	}
	defer s.removeListener(l)
	var delay time.Duration // after a temporary accept error
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var temp interface{ Temporary() bool }
			if errors.As(err, &temp) && temp.Temporary() {
				// Out of file descriptors and the like: wait, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("imapd: serve %s: %w", l.Addr(), err)
		}
		delay = 0
		s.serveConn(c)
	}
}

// serveConn starts serving one accepted connection on its own
// imapserver.Server (see the package comment).
func (s *Server) serveConn(c net.Conn) {
	opts := s.imapOpts
	if g := guardOf(c); g != nil {
		g.trace = s.trace.Session(trace.IMAP, remoteIP(c).String())
		opts.DebugWriter = g.trace.Writer()
	}
	// Serve hands c to a goroutine of its own and returns at the second
	// Accept, which reports oneConn closed.
	_ = imapserver.New(&opts).Serve(&oneConn{c: c, addr: c.LocalAddr()})
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

// Close stops the listeners, says BYE to every connection, closes them and
// cancels storage calls in flight. It returns once every listener is closed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	for l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	var appending chan struct{}
	if s.appends > 0 {
		appending = make(chan struct{})
		s.appendsIn = appending
	}
	s.mu.Unlock()

	if appending != nil {
		select {
		case <-appending:
		case <-time.After(appendGrace):
			s.log.Warn("APPENDs still in progress after the grace time; closing their connections")
		}
	}

	// BYE is written under go-imap's response lock, so it waits for a
	// response in progress; a stuck client must not hold up shutdown.
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, sess := range sessions {
			wg.Go(func() { sess.conn.Bye("pochta is shutting down") })
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(byeTimeout):
		s.log.Warn("some connections did not take BYE in time; closing them")
	}
	s.cancel()
	s.mu.Lock()
	conns := make([]*guardedConn, 0, len(s.open))
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		// Closing the socket ends go-imap's goroutine for it, which then
		// closes its side (and the slot) through guardedConn.Close.
		c.Conn.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("imapd: close: %w", err)
	}
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) addListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) removeListener(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
}

func (s *Server) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	sess := newSession(s, conn)
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.sessions[sess] = ""
	}
	s.mu.Unlock()
	if closed {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "pochta is shutting down"}
	}
	s.metrics.SessionOpened()
	return sess, nil, nil
}

// loggedIn records which user a session belongs to, for EndUserSessions.
func (s *Server) loggedIn(sess *session, user string) {
	s.mu.Lock()
	if _, ok := s.sessions[sess]; ok {
		s.sessions[sess] = user
	}
	s.mu.Unlock()
}

// EndUserSessions ends every session of user (a canonical address): each
// gets an untagged BYE and its connection closes. The control API calls it
// once the user's deletion is committed. It returns when every BYE is
// written, or after byeTimeout, when the connections that did not take it
// (a client not reading) are closed without it.
func (s *Server) EndUserSessions(user string) {
	s.mu.Lock()
	var victims []*session
	for sess, u := range s.sessions {
		if u == user {
			victims = append(victims, sess)
		}
	}
	s.mu.Unlock()
	if len(victims) == 0 {
		return
	}
	s.log.Info("ending the sessions of a deleted user", "user", user, "sessions", len(victims))
	var wg sync.WaitGroup
	for _, sess := range victims {
		wg.Go(func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				sess.conn.Bye("Your account was deleted")
			}()
			select {
			case <-done:
			case <-time.After(byeTimeout):
				sess.conn.NetConn().Close()
			}
		})
	}
	wg.Wait()
}

func (s *Server) removeSession(sess *session) {
	s.mu.Lock()
	_, ok := s.sessions[sess]
	delete(s.sessions, sess)
	s.mu.Unlock()
	if ok {
		s.metrics.SessionClosed()
	}
}

// imapLogger routes go-imap's log lines to slog. go-imap recovers panics per
// connection and reports them here, so they are counted too.
type imapLogger struct {
	log     *slog.Logger
	metrics Metrics
}

func (l imapLogger) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.HasPrefix(msg, "panic") {
		l.metrics.Panic()
		l.log.Error("recovered panic in go-imap", "detail", msg)
		return
	}
	l.log.Info(msg)
}
