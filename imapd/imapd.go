// Package imapd is pochta's IMAP server: the protocol of package
// imapd/protocol (over imapd/wire) served from the storage.Store interface. It owns the IMAP sessions and the in-memory state
// shared by the sessions that have a mailbox selected; everything persistent
// lives in storage.
//
// Promises:
//   - A user only ever reaches their own mailboxes: every storage call
//     carries the logged-in address, and mailbox names are names within that
//     account, never paths.
//   - Sequence numbers stay right across sessions. Each selected mailbox has
//     one shared UID list and a protocol.MailboxTracker; each session sees
//     it through its own protocol.SessionTracker, so an expunge in one
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
//   - Shutdown answers every command in flight (an APPEND whose
//     continuation was sent is stored and answered OK) and then says BYE;
//     clients between commands, in IDLE or not logged in get BYE at once
//     (shutdown.go).
//
// Each connection is served by protocol.Server.ServeConn on its own
// goroutine, with the connection's protocol trace as the copy of the
// cleartext (including after STARTTLS, which package protocol performs).
//
// Concurrency rules (the registry in registry.go):
//   - storage calls the event listener on its writer goroutine, in commit
//     order. The listener only takes short mutexes and queues tracker updates;
//     it never does I/O and never waits for a session.
//   - Lock order: registry.mu, then sharedMailbox.mu, then protocol's tracker
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
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/trace"
)

// DefaultMaxMessageSize is the APPEND limit used when Options.MaxMessageSize
// is zero; it matches the SMTP default ([smtp] max_message_size).
const DefaultMaxMessageSize = 25 << 20

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
	// DefaultIdleTimeout. Before login protocol's 30 s applies.
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
	// CompressDeflate offers COMPRESS=DEFLATE (RFC 4978); cmd/pochta
	// turns it on. The client's stream is decoded by imapd/inflate, which
	// hands over a command at every block end, so clients that flush with
	// zlib's Z_PARTIAL_FLUSH (isync/mbsync) are answered at once.
	CompressDeflate bool
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
	proto       *protocol.Server
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
	listeners map[net.Listener]struct{}
	sessions  map[*session]string       // the logged-in user's address, or ""
	open      map[*guardedConn]struct{} // connections not yet closed
	refusing  int                       // goroutines answering refused connections
}

// caps lists what package protocol implements and this package backs;
// protocol advertises exactly these (by state), plus STARTTLS when
// possible, AUTH=PLAIN or LOGINDISABLED, and APPENDLIMIT=n from
// session.AppendLimit. IMAP4rev1 clients such as Outlook only use what is
// listed.
func caps(compress bool) imap.CapSet {
	set := imap.CapSet{
		imap.CapIMAP4rev1:           {},
		imap.CapIMAP4rev2:           {},
		imap.CapLiteralPlus:         {}, // RFC 7888
		imap.CapNamespace:           {}, // RFC 2342
		imap.CapUIDPlus:             {}, // RFC 4315: APPENDUID, COPYUID, UID EXPUNGE
		imap.CapMove:                {}, // RFC 6851
		imap.CapESearch:             {}, // RFC 4731
		imap.CapSearchRes:           {}, // RFC 5182: SEARCH RETURN (SAVE) and "$"
		imap.CapListExtended:        {}, // RFC 5258
		imap.CapListStatus:          {}, // RFC 5819
		imap.CapSpecialUse:          {}, // RFC 6154
		imap.CapChildren:            {}, // RFC 3348
		imap.CapStatusSize:          {}, // RFC 8438
		imap.CapBinary:              {}, // RFC 3516
		imap.CapSASLIR:              {}, // RFC 4959
		imap.CapUnselect:            {}, // RFC 3691
		imap.CapEnable:              {}, // RFC 5161
		imap.CapIdle:                {}, // RFC 2177
		imap.CapLiteralMinus:        {}, // RFC 7888 (before login)
		imap.CapUTF8Accept:          {}, // RFC 6855
		imap.CapID:                  {}, // RFC 2971, also before login
		imap.CapMultiAppend:         {}, // RFC 3502, all or nothing
		imap.CapQuota:               {}, // RFC 9208, STORAGE only
		protocol.CapQuotaResStorage: {},
		imap.CapCondStore:           {}, // RFC 7162
		imap.CapQResync:             {}, // RFC 7162

		imap.CapSort:            {}, // RFC 5256
		imap.CapESort:           {}, // RFC 5267: SORT RETURN (...)
		"THREAD=ORDEREDSUBJECT": {}, // RFC 5256
		"THREAD=REFERENCES":     {}, // RFC 5256
		// SORT=DISPLAY (RFC 5957) works but for an address the stored
		// envelope dropped as unparsable ("From: d"): imaptest's
		// sort-display-* fail on it, so it is not offered.
	}
	if compress {
		set[protocol.CapCompressDeflate] = struct{}{} // RFC 4978
	}
	return set
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
	s.proto = protocol.New(&protocol.Options{
		NewSession:   s.newSession,
		Caps:         caps(opts.CompressDeflate),
		Logger:       log,
		OnPanic:      metrics.Panic,
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: opts.AllowInsecureAuth,
	})
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

// serveConn starts serving one accepted connection on its own goroutine.
func (s *Server) serveConn(c net.Conn) {
	var debug io.Writer
	if g := guardOf(c); g != nil {
		g.trace = s.trace.Session(trace.IMAP, remoteIP(c).String())
		if w := g.trace.Writer(); w != nil {
			debug = w
		}
	}
	go s.proto.ServeConn(c, debug)
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

func (s *Server) newSession(conn *protocol.Conn) (protocol.Session, *protocol.GreetingData, error) {
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
// (a client not reading) are closed without it. Calling it again, or
// while an earlier call runs, ends each session once.
func (s *Server) EndUserSessions(user string) {
	const byeTimeout = 5 * time.Second
	s.mu.Lock()
	var victims []*session
	for sess, u := range s.sessions {
		if u == user {
			victims = append(victims, sess)
			// Being ended: a second call (the control API's and the
			// store's event both) finds it no more.
			s.sessions[sess] = ""
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
