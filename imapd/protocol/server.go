package protocol

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// The deadlines a connection arms. Waiting for a logged-in client's next
// command (and for DONE in IDLE) is longer than RFC 9051 5.4's 30-minute
// autologout minimum; the embedding server may shorten it through the
// net.Conn it passes (imapd's guardedConn tells waits from reads by
// length).
const (
	cmdReadTimeout     = 30 * time.Second
	waitReadTimeout    = 35 * time.Minute
	literalReadTimeout = 5 * time.Minute
	writeTimeout       = 5 * time.Minute
	handshakeTimeout   = 30 * time.Second
)

// maxBadCommands is how many malformed or unknown commands in a row a
// connection may send before it is closed: enough for a confused client
// to recover, too few to make the server a free parser. Before login the
// bound is maxBadBeforeLogin, low enough that the header lines of an HTTP
// request sent to the port (a cross-protocol attack) end the connection
// before its body is read.
const (
	maxBadCommands    = 20
	maxBadBeforeLogin = 5
)

// Options configure a Server.
type Options struct {
	// NewSession makes the Session of a new connection. An *imap.Error of
	// type BYE refuses the connection with its text.
	NewSession func(*Conn) (Session, *GreetingData, error)
	// Caps lists the capabilities to advertise; only those also
	// implemented here are. It must hold IMAP4rev1 or IMAP4rev2.
	Caps imap.CapSet
	// TLSConfig enables STARTTLS.
	TLSConfig *tls.Config
	// InsecureAuth allows LOGIN and AUTHENTICATE without TLS.
	InsecureAuth bool
	// Limits bound each command (wire.Limits); the APPEND literal is
	// bounded by Session.AppendLimit instead.
	Limits wire.Limits
	// Logger gets the connection errors; nil means slog.Default().
	Logger *slog.Logger
	// OnPanic is called after a panic while serving a connection was
	// recovered (and logged); the connection is closed.
	OnPanic func()
}

// Server serves IMAP connections. It holds no per-connection state and is
// safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
}

// New returns a server with opts.
func New(opts *Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{opts: *opts, log: log}
}

// ServeConn serves one connection until it ends, then closes it. debug,
// if not nil, receives a copy of every byte read and written in cleartext
// (the protocol trace).
func (s *Server) ServeConn(c net.Conn, debug io.Writer) {
	conn := &Conn{srv: s, conn: c, debug: debug, enabled: make(imap.CapSet)}
	conn.setStreams(c)
	conn.serve()
}

// Conn is one connection, as a Session sees it.
type Conn struct {
	srv   *Server
	debug io.Writer

	mu      sync.Mutex // guards conn, enabled, state for other goroutines
	conn    net.Conn
	enabled imap.CapSet
	state   imap.ConnState

	br  *bufio.Reader
	dec *wire.Decoder

	encMu sync.Mutex // one response at a time
	bw    *bufio.Writer
	enc   *wire.Encoder

	session   Session
	badInARow int // BAD answers in a row (maxBadCommands)
	// announceHighest: CONDSTORE was enabled by a command in the
	// selected state, which then owes HIGHESTMODSEQ (cmd_condstore.go).
	announceHighest bool

	compressed bool // COMPRESS DEFLATE is active; guarded by mu

	// A BYE asked for while a command is served waits for its tagged
	// response (see Bye); guarded by mu.
	inCommand bool
	idling    bool
	byeText   string
	byeWanted bool
	byeDone   chan struct{} // closed once the BYE is written or the connection ended
}

// NetConn returns the connection (a *tls.Conn after STARTTLS).
func (c *Conn) NetConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// EnabledCaps returns what the client turned on with ENABLE.
func (c *Conn) EnabledCaps() imap.CapSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enabled.Copy()
}

// Bye says BYE with text and closes the connection. Safe to call from any
// goroutine. A command being served (an APPEND whose literal is
// arriving) is answered first, so Bye waits for it; between commands and
// in IDLE the BYE goes at once. Not for a Session method to call: it
// would wait for its own command (close NetConn instead).
func (c *Conn) Bye(text string) error {
	c.mu.Lock()
	if c.inCommand && !c.idling {
		if !c.byeWanted {
			c.byeWanted, c.byeText = true, text
			c.byeDone = make(chan struct{})
		}
		done := c.byeDone
		c.mu.Unlock()
		<-done
		return nil
	}
	c.mu.Unlock()
	return c.sayBye(text)
}

// ByeNow says BYE with text and closes the connection without waiting for
// the command being served: for the connection's own reader (a read that
// timed out, an eviction), which Bye would have wait for itself. Safe from
// any goroutine that does not hold a response in progress.
func (c *Conn) ByeNow(text string) error {
	return c.sayBye(text)
}

func (c *Conn) sayBye(text string) error {
	werr := c.respond(func(e *wire.Encoder) { e.Status("", imap.StatusResponseTypeBye, "", text) })
	cerr := c.NetConn().Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// setCommand marks a command as being served or not; at its end a BYE
// asked for meanwhile is said, and false is returned: the connection ends.
func (c *Conn) setCommand(on bool) bool {
	c.mu.Lock()
	c.inCommand = on
	wanted, text, done := c.byeWanted, c.byeText, c.byeDone
	c.mu.Unlock()
	if on || !wanted {
		return true
	}
	c.sayBye(text)
	close(done)
	return false
}

// setIdling marks the wait for DONE, during which BYE goes at once.
func (c *Conn) setIdling(on bool) {
	c.mu.Lock()
	c.idling = on
	c.mu.Unlock()
}

func (c *Conn) setStreams(nc net.Conn) {
	var r io.Reader = nc
	var w io.Writer = nc
	c.mu.Lock()
	compressed := c.compressed
	c.mu.Unlock()
	if compressed {
		r, w = compressStreams(r, w)
	}
	if c.debug != nil {
		// Above the compression: the trace is of the protocol text.
		r = io.TeeReader(r, c.debug)
		w = io.MultiWriter(w, c.debug)
	}
	c.br = bufio.NewReader(r)
	c.bw = bufio.NewWriter(w)
	if c.dec == nil {
		c.dec = wire.NewDecoder(c.br, c.srv.opts.Limits)
		c.dec.Continue = func() error {
			return c.respond(func(e *wire.Encoder) { e.Continuation("Ready for literal data") })
		}
	} else {
		c.dec.Reset(c.br)
	}
	c.encMu.Lock()
	c.enc = wire.NewEncoder(c.bw)
	c.encMu.Unlock()
}

// respond writes one response under the response lock and flushes it.
func (c *Conn) respond(write func(e *wire.Encoder)) error {
	c.encMu.Lock()
	defer c.encMu.Unlock()
	return c.writeLocked(write)
}

func (c *Conn) writeLocked(write func(e *wire.Encoder)) error {
	c.mu.Lock()
	nc := c.conn
	c.enc.UTF8 = c.enabled.Has(imap.CapIMAP4rev2) || c.enabled.Has(imap.CapUTF8Accept)
	c.mu.Unlock()
	nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	write(c.enc)
	return c.enc.Flush()
}

func (c *Conn) setState(st imap.ConnState) {
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
	lim := c.srv.opts.Limits
	if st == imap.ConnStateNotAuthenticated {
		// Before login only LITERAL- is advertised.
		lim.LiteralMinus = true
	} else {
		lim.LiteralMinus = !c.srv.opts.Caps.Has(imap.CapLiteralPlus)
		// An APPEND over the limit is read and thrown away rather than
		// cutting the connection, up to that much.
		if c.session != nil {
			lim.Discard = max(lim.Discard, int64(c.session.AppendLimit())+wire.DefaultDiscard)
		}
	}
	c.dec.SetLimits(lim)
}

func (c *Conn) getState() imap.ConnState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Conn) setReadTimeout(d time.Duration) {
	c.NetConn().SetReadDeadline(time.Now().Add(d))
}

func (c *Conn) serve() {
	defer func() {
		if v := recover(); v != nil {
			c.srv.log.Error("recovered panic serving an IMAP connection; closing it",
				"panic", v, "stack", string(debug.Stack()))
			if c.srv.opts.OnPanic != nil {
				c.srv.opts.OnPanic()
			}
		}
		c.NetConn().Close()
		c.mu.Lock()
		if c.byeWanted {
			select {
			case <-c.byeDone:
			default:
				close(c.byeDone)
			}
		}
		c.mu.Unlock()
	}()
	session, greeting, err := c.srv.opts.NewSession(c)
	if err != nil {
		text := "Internal server error"
		var ierr *imap.Error
		if errors.As(err, &ierr) && ierr.Type == imap.StatusResponseTypeBye {
			text = ierr.Text
		} else {
			c.srv.log.Error("creating an IMAP session", "err", err)
		}
		c.respond(func(e *wire.Encoder) { e.Status("", imap.StatusResponseTypeBye, "", text) })
		return
	}
	c.session = session
	defer func() {
		if err := session.Close(); err != nil {
			c.srv.log.Warn("closing an IMAP session", "err", err)
		}
	}()
	typ := imap.StatusResponseTypeOK
	c.setState(imap.ConnStateNotAuthenticated)
	if greeting != nil && greeting.PreAuth {
		typ = imap.StatusResponseTypePreAuth
		c.setState(imap.ConnStateAuthenticated)
	}
	if err := c.respond(func(e *wire.Encoder) { e.Status("", typ, c.capabilityCode(), "IMAP server ready") }); err != nil {
		return
	}
	for c.getState() != imap.ConnStateLogout {
		wait := cmdReadTimeout
		if st := c.getState(); st == imap.ConnStateAuthenticated || st == imap.ConnStateSelected {
			wait = waitReadTimeout
		}
		c.setReadTimeout(wait)
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		c.setReadTimeout(cmdReadTimeout)
		c.setCommand(true)
		err := c.readCommand()
		if !c.setCommand(false) {
			return
		}
		if err != nil {
			if !isConnError(err) {
				c.srv.log.Warn("IMAP connection ended", "err", err)
			}
			return
		}
	}
}

// errByeSent ends a connection the server closed on purpose, having said
// why in a BYE.
var errByeSent = errors.New("connection closed after BYE")

// isConnError reports an error of the connection itself (closed, reset,
// timed out, EOF), which needs no log line of its own.
func isConnError(err error) bool {
	var ne net.Error
	return errors.Is(err, errByeSent) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne)
}

// command is the one being served.
type command struct {
	tag, name string
	kind      NumKind
	// code and text make the tagged OK ("[APPENDUID 1 2] APPEND completed").
	code, text string
	// responded: the handler wrote the tagged response itself (STARTTLS).
	responded bool
}

// handler serves one command; its arguments are read from c.dec.
type handler struct {
	serve func(c *Conn, cmd *command) error
	// states the command is valid in; none means any.
	states []imap.ConnState
	// noExpunge: EXPUNGE may not be sent after it (RFC 9051 7.5.1).
	noExpunge bool
}

var (
	anyState = []imap.ConnState(nil)
	notAuth  = []imap.ConnState{imap.ConnStateNotAuthenticated}
	authed   = []imap.ConnState{imap.ConnStateAuthenticated, imap.ConnStateSelected}
	selected = []imap.ConnState{imap.ConnStateSelected}
)

// commands maps a command name ("UID FETCH" for the UID forms) to its
// handler; each lives in the cmd_*.go file of its family.
var commands map[string]handler

func init() {
	commands = map[string]handler{
		"CAPABILITY": {serve: (*Conn).handleCapability, states: anyState},
		"NOOP":       {serve: (*Conn).handleNoop, states: anyState},
		"CHECK":      {serve: (*Conn).handleNoop, states: selected},
		"LOGOUT":     {serve: (*Conn).handleLogout, states: anyState},
		"ID":         {serve: (*Conn).handleID, states: anyState},

		"STARTTLS":     {serve: (*Conn).handleStartTLS, states: notAuth},
		"LOGIN":        {serve: (*Conn).handleLogin, states: notAuth},
		"AUTHENTICATE": {serve: (*Conn).handleAuthenticate, states: notAuth},
		"ENABLE":       {serve: (*Conn).handleEnable, states: authed},

		"SELECT":      {serve: (*Conn).handleSelect, states: authed},
		"EXAMINE":     {serve: (*Conn).handleSelect, states: authed},
		"CREATE":      {serve: (*Conn).handleCreate, states: authed},
		"DELETE":      {serve: (*Conn).handleDelete, states: authed},
		"RENAME":      {serve: (*Conn).handleRename, states: authed},
		"SUBSCRIBE":   {serve: (*Conn).handleSubscribe, states: authed},
		"UNSUBSCRIBE": {serve: (*Conn).handleSubscribe, states: authed},
		"STATUS":      {serve: (*Conn).handleStatus, states: authed},
		"NAMESPACE":   {serve: (*Conn).handleNamespace, states: authed},
		"LIST":        {serve: (*Conn).handleList, states: authed},
		"LSUB":        {serve: (*Conn).handleList, states: authed},
		"IDLE":        {serve: (*Conn).handleIdle, states: authed},
		"APPEND":      {serve: (*Conn).handleAppend, states: authed},
		"COMPRESS":    {serve: (*Conn).handleCompress, states: authed},

		"GETQUOTA":     {serve: (*Conn).handleGetQuota, states: authed},
		"GETQUOTAROOT": {serve: (*Conn).handleGetQuotaRoot, states: authed},
		"SETQUOTA":     {serve: (*Conn).handleSetQuota, states: authed},

		"CLOSE":       {serve: (*Conn).handleUnselect, states: selected},
		"UNSELECT":    {serve: (*Conn).handleUnselect, states: selected},
		"EXPUNGE":     {serve: (*Conn).handleExpunge, states: selected},
		"UID EXPUNGE": {serve: (*Conn).handleExpunge, states: selected},
		"FETCH":       {serve: (*Conn).handleFetch, states: selected, noExpunge: true},
		"UID FETCH":   {serve: (*Conn).handleFetch, states: selected},
		"STORE":       {serve: (*Conn).handleStore, states: selected, noExpunge: true},
		"UID STORE":   {serve: (*Conn).handleStore, states: selected},
		"SEARCH":      {serve: (*Conn).handleSearch, states: selected, noExpunge: true},
		"UID SEARCH":  {serve: (*Conn).handleSearch, states: selected},
		"COPY":        {serve: (*Conn).handleCopy, states: selected},
		"UID COPY":    {serve: (*Conn).handleCopy, states: selected},
		"MOVE":        {serve: (*Conn).handleMove, states: selected},
		"UID MOVE":    {serve: (*Conn).handleMove, states: selected},
		"SORT":        {serve: (*Conn).handleSort, states: selected, noExpunge: true},
		"UID SORT":    {serve: (*Conn).handleSort, states: selected},
		"THREAD":      {serve: (*Conn).handleThread, states: selected, noExpunge: true},
		"UID THREAD":  {serve: (*Conn).handleThread, states: selected},
	}
}

// readCommand reads and serves one command. An error return ends the
// connection.
func (c *Conn) readCommand() error {
	d := c.dec
	d.Begin()
	cmd := &command{kind: NumKindSeq}
	h, err := c.readName(cmd)
	if err == nil {
		err = c.checkState(cmd, h)
	}
	if err == nil {
		err = h.serve(c, cmd)
	}
	return c.finish(cmd, h, err)
}

// readName reads the tag and the command name.
func (c *Conn) readName(cmd *command) (handler, error) {
	d := c.dec
	var err error
	if cmd.tag, err = d.Tag(); err != nil {
		return handler{}, err
	}
	if err := d.SP(); err != nil {
		return handler{}, err
	}
	name, err := d.Atom()
	if err != nil {
		return handler{}, err
	}
	cmd.name = strings.ToUpper(name)
	if cmd.name == "UID" {
		if err := d.SP(); err != nil {
			return handler{}, err
		}
		sub, err := d.Atom()
		if err != nil {
			return handler{}, err
		}
		cmd.name = "UID " + strings.ToUpper(sub)
		cmd.kind = NumKindUID
	}
	h, ok := commands[cmd.name]
	if !ok || !c.advertised(cmd.name) {
		return handler{}, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command " + clip(cmd.name)}
	}
	return h, nil
}

// advertised reports whether an extension command is on offer.
func (c *Conn) advertised(name string) bool {
	caps := c.srv.opts.Caps
	switch name {
	case "MOVE", "UID MOVE":
		return caps.Has(imap.CapMove)
	case "UID EXPUNGE":
		return caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapIMAP4rev2)
	case "ID":
		return caps.Has(imap.CapID)
	case "NAMESPACE":
		return caps.Has(imap.CapNamespace) || caps.Has(imap.CapIMAP4rev2)
	case "STARTTLS":
		return c.srv.opts.TLSConfig != nil
	case "COMPRESS":
		return caps.Has(CapCompressDeflate)
	case "GETQUOTA", "GETQUOTAROOT", "SETQUOTA":
		return caps.Has(imap.CapQuota)
	case "SORT", "UID SORT":
		return caps.Has(imap.CapSort)
	case "THREAD", "UID THREAD":
		return len(caps.ThreadAlgorithms()) > 0
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (c *Conn) checkState(cmd *command, h handler) error {
	if len(h.states) == 0 {
		return nil
	}
	st := c.getState()
	for _, ok := range h.states {
		if st == ok {
			return nil
		}
	}
	text := "Log in first"
	switch {
	case st != imap.ConnStateNotAuthenticated && len(h.states) == 1 && h.states[0] == imap.ConnStateNotAuthenticated:
		text = "Already logged in"
	case st == imap.ConnStateAuthenticated:
		text = "Select a mailbox first"
	}
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: cmd.name + ": " + text}
}

// finish sends the tagged response for err (nil: OK after the pending
// updates) and gets the decoder to the next command. An error return ends
// the connection.
func (c *Conn) finish(cmd *command, h handler, err error) error {
	tag := cmd.tag
	if tag == "" {
		tag = "*"
	}
	if werr := c.enc.Err(); werr != nil {
		return werr
	}
	if err == nil {
		c.badInARow = 0
		if cmd.responded {
			return nil
		}
		if err := c.announceHighestModSeq(); err != nil {
			return err
		}
		if st := c.getState(); st == imap.ConnStateAuthenticated || st == imap.ConnStateSelected {
			if err := c.session.Poll(&UpdateWriter{conn: c, allowExpunge: !h.noExpunge}, !h.noExpunge); err != nil {
				if isConnError(err) || c.enc.Err() != nil {
					return err
				}
				c.srv.log.Error("IMAP poll failed", "command", cmd.name, "err", err)
			}
		}
		text := cmd.text
		if text == "" {
			text = cmd.name + " completed"
		}
		return c.respond(func(e *wire.Encoder) { e.Status(tag, imap.StatusResponseTypeOK, cmd.code, text) })
	}

	c.announceHighest = false
	if werr := wire.AsError(err); werr != nil {
		if werr.Fatal {
			c.respond(func(e *wire.Encoder) { e.Status("", imap.StatusResponseTypeBye, string(werr.Code), werr.Text) })
			return fmt.Errorf("%w: %v", errByeSent, err)
		}
		typ := imap.StatusResponseTypeBad
		if werr.No {
			typ = imap.StatusResponseTypeNo
		}
		return c.refuse(tag, typ, string(werr.Code), werr.Text)
	}
	var ierr *imap.Error
	if errors.As(err, &ierr) {
		return c.refuse(tag, ierr.Type, string(ierr.Code), ierr.Text)
	}
	if isConnError(err) {
		return err
	}
	c.srv.log.Error("IMAP command failed", "command", cmd.name, "err", err)
	return c.refuse(tag, imap.StatusResponseTypeNo, string(imap.ResponseCodeServerBug), "Internal server error; the problem has been logged")
}

// refuse skips what is left of the command and answers it with typ. A run
// of bad commands ends the connection.
func (c *Conn) refuse(tag string, typ imap.StatusResponseType, code, text string) error {
	if err := c.dec.SkipCommand(); err != nil {
		if werr := wire.AsError(err); werr != nil {
			c.respond(func(e *wire.Encoder) { e.Status("", imap.StatusResponseTypeBye, "", werr.Text) })
			return fmt.Errorf("%w: %v", errByeSent, err)
		}
		return err
	}
	if typ == imap.StatusResponseTypeBye {
		c.respond(func(e *wire.Encoder) { e.Status("", typ, code, text) })
		return errByeSent
	}
	if typ == imap.StatusResponseTypeBad {
		c.badInARow++
	}
	if err := c.respond(func(e *wire.Encoder) { e.Status(tag, typ, code, text) }); err != nil {
		return err
	}
	limit := maxBadCommands
	if c.getState() == imap.ConnStateNotAuthenticated {
		limit = maxBadBeforeLogin
	}
	if c.badInARow >= limit {
		c.respond(func(e *wire.Encoder) {
			e.Status("", imap.StatusResponseTypeBye, "", "Too many bad commands; closing the connection")
		})
		return errByeSent
	}
	return nil
}

// mailbox reads a mailbox name: INBOX in any case is INBOX, and anything
// else must be valid modified UTF-7 unless UTF-8 was enabled. A name that
// is not is a well-formed astring (the grammar's "mailbox") that names no
// mailbox and can never be created: NO [CANNOT], as Dovecot answers, not
// BAD (the command's syntax is right) nor SERVERBUG.
func (c *Conn) mailbox() (string, error) {
	name, err := c.dec.AString()
	if err != nil {
		return "", err
	}
	return c.decodeMailbox(name)
}

func (c *Conn) decodeMailbox(name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	caps := c.EnabledCaps()
	if caps.Has(imap.CapIMAP4rev2) || caps.Has(imap.CapUTF8Accept) {
		return name, nil
	}
	decoded, err := wire.DecodeMailbox(name)
	if err != nil {
		return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: fmt.Sprintf("Mailbox name %q is not valid modified UTF-7 (RFC 3501 5.1.3)", clip(name))}
	}
	return decoded, nil
}

// canAuth reports whether LOGIN and AUTHENTICATE are allowed now.
func (c *Conn) canAuth() bool {
	if c.getState() != imap.ConnStateNotAuthenticated {
		return false
	}
	_, isTLS := c.NetConn().(*tls.Conn)
	return isTLS || c.srv.opts.InsecureAuth
}

func (c *Conn) canStartTLS() bool {
	_, isTLS := c.NetConn().(*tls.Conn)
	return c.srv.opts.TLSConfig != nil && !isTLS && c.getState() == imap.ConnStateNotAuthenticated
}
