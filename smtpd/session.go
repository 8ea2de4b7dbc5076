package smtpd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

// Replies shared by several commands.
var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errNullSender = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "The null sender <> is not accepted on submission; use your own address"}
	errBadAddress = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "Malformed recipient address"}
	errNoSuchUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "No such user here"}
	errRelayDisabled = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relaying is disabled: this server delivers only to its own domains"}
	errTemporary = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary server error; try again later"}
	errNotStored = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Message not stored because of a server error; try again later"}
	errNoRecipients = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "No valid recipients"}
	errIncomplete = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "Message not received completely; nothing was stored"}
	errAddressLiteral = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2},
		Message: "Mail to address literals like user@[192.0.2.1] is not relayed; use a domain name"}
	errTooDeep = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: fmt.Sprintf("Message is nested deeper than %d MIME levels; nothing was stored", message.MaxNesting)}
	errTooManyParts = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: fmt.Sprintf("Message has more than %d MIME parts; nothing was stored", message.MaxParts)}
	errHeaderTooBig = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: fmt.Sprintf("Message has a header section larger than %d KiB; nothing was stored", message.MaxHeaderBytes>>10)}
	errAuthTemporary = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure; try again later"}
	errAuthBusy = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many logins are being checked; try again later"}
)

// session is one SMTP connection's state between go-smtp and the store. The
// inbound port uses it as is; submission wraps it in submissionSession to
// add AUTH (go-smtp offers AUTH only to sessions implementing
// smtp.AuthSession).
type session struct {
	srv    *Server
	kind   listenerKind
	conn   *smtp.Conn
	tc     *trackedConn
	remote netip.Addr

	user string // authenticated address, canonical (lower-case)
	// submitter names the in-process client of a session without a
	// connection (Server.Submit), for the Received field.
	submitter string

	// The current transaction, cleared by Reset.
	id       string
	from     string
	rcpts    []string // accepted local recipients, canonical, unique
	external []string // accepted external recipients, unique
	declared int64    // the size MAIL FROM announced (SIZE=, RFC 1870); 0: none
}

func (s *Server) newSession(kind listenerKind, c *smtp.Conn) smtp.Session {
	base := &session{
		srv:    s,
		kind:   kind,
		conn:   c,
		tc:     trackedOf(c.Conn()),
		remote: remoteIP(c.Conn()),
	}
	base.tc.repliesVia(c.Conn())
	if kind == kindInbound {
		return base
	}
	return &submissionSession{base}
}

// Reset implements smtp.Session.
func (s *session) Reset() {
	s.tc.setBusy(false)
	s.id, s.from, s.rcpts, s.external, s.declared = "", "", nil, nil, 0
}

// Logout implements smtp.Session.
func (s *session) Logout() error { return nil }

// Mail implements smtp.Session.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.kind != kindInbound {
		if s.user == "" {
			return s.srv.reject("auth_required", errAuthRequired)
		}
		if from == "" {
			return s.srv.reject("null_sender", errNullSender)
		}
		// SPEC "Mail behaviour": the envelope sender must be the
		// authenticated user's address.
		if !strings.EqualFold(from, s.user) {
			s.srv.log.Info("smtp sender refused", "listener", s.kind.String(),
				"remote", s.remote.String(), "user", s.user, "from", from)
			return s.srv.reject("spoofed_sender", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
				Message: fmt.Sprintf("Sender address <%s> is not yours: you are logged in as <%s>", from, s.user)})
		}
		from = s.user
	}
	s.Reset()
	// From here until Reset (which go-smtp calls after DATA, RSET and a
	// new EHLO) Shutdown lets the transaction finish.
	s.tc.setBusy(true)
	s.id = newTransactionID()
	s.from = from
	if opts != nil {
		s.declared = opts.Size
	}
	return nil
}

// Rcpt implements smtp.Session.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	addr, ok := normalizeAddress(to)
	if !ok {
		return s.srv.reject("bad_address", errBadAddress)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deliverTimeout)
	defer cancel()
	rcpt, external, err := s.srv.route(ctx, addr)
	if err != nil {
		s.srv.log.Debug("smtp recipient refused", "listener", s.kind.String(),
			"remote", s.remote.String(), "id", s.id, "rcpt", addr, "reply", err.Error())
		return s.srv.reject(recipientReason(err), err)
	}
	if !external {
		if err := s.srv.checkQuota(ctx, rcpt, s.declared); err != nil {
			s.srv.log.Info("smtp recipient over quota", "listener", s.kind.String(),
				"remote", s.remote.String(), "id", s.id, "rcpt", rcpt)
			return s.srv.reject(recipientReason(err), err)
		}
	}
	list := &s.rcpts
	if external {
		list = &s.external
	}
	if !slices.Contains(*list, rcpt) {
		*list = append(*list, rcpt)
	}
	return nil
}

// route decides where mail for one recipient goes and returns the local
// user's canonical address. It is the single place that knows the routing
// rule, so the queue can take over external recipients here.
//
// Local domain + existing user -> delivered here; local domain + unknown
// user -> 550 5.1.1; other domains -> 550 5.7.1 without a relay, and with
// one the queue (source "user" on submission, "system" on inbound).
func (s *Server) route(ctx context.Context, addr string) (rcpt string, external bool, err error) {
	domain := addr[strings.LastIndexByte(addr, '@')+1:]
	if !s.isLocalDomain(domain) {
		if !s.opts.QueueEnabled {
			return "", false, errRelayDisabled
		}
		// Angle brackets would let the address end the relay's RCPT
		// command early; the queue refuses them, so refuse them here.
		if strings.ContainsAny(addr, "<>") {
			return "", false, errBadAddress
		}
		// An address literal names a host, not a domain: relaying to
		// one would let a user reach any machine the server can,
		// loopback and the local network included.
		if message.IsAddressLiteral(domain) {
			return "", false, errAddressLiteral
		}
		// The whole address is kept as given: the local part of another
		// domain's address may be case-sensitive (RFC 5321 2.4).
		return addr, true, nil
	}
	u, err := s.opts.Store.User(ctx, strings.ToLower(addr))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return "", false, errNoSuchUser
	case errors.Is(err, storage.ErrInvalid):
		return "", false, errBadAddress
	case err != nil:
		s.log.Error("smtp recipient lookup failed", "rcpt", addr, "err", err)
		return "", false, errTemporary
	}
	return u.Address, false, nil
}

// Data implements smtp.Session: it reads the whole message (bounded by
// go-smtp's MaxMessageBytes), edits its header and stores every copy with
// one storage.Deliver call. go-smtp answers 250 only when Data returns nil.
func (s *session) Data(r io.Reader) error {
	start := time.Now()

	read, err := s.readMessage(r)
	if err != nil {
		reply, result := s.readError(err)
		s.logTransaction(start, 0, result, err)
		return s.srv.reject(strings.ReplaceAll(result, " ", "_"), reply)
	}
	// Every copy below is a slice of this buffer until Deliver has
	// returned: the store has then written them (or failed) and keeps
	// no reference.
	defer func() {
		if err := read.Release(); err != nil {
			s.srv.log.Error("smtp: releasing a message buffer", "id", s.id, "err", err)
		}
	}()
	buf := read.Bytes()
	raw := buf[maxTraceFields:]
	size := len(raw)
	if len(s.rcpts)+len(s.external) == 0 {
		s.logTransaction(start, size, "rejected", errNoRecipients)
		return s.srv.reject("no_recipients", errNoRecipients)
	}

	now := time.Now()
	rcpt := ""
	if len(s.rcpts)+len(s.external) == 1 {
		rcpt = message.QuoteLocalPart(append(s.rcpts, s.external...)[0])
	}
	helo, isTLS := s.submitter, true
	if s.conn != nil {
		_, isTLS = s.conn.TLSConnectionState()
		helo = s.conn.Hostname()
	}
	received := receivedField(receivedInfo{
		helo:     helo,
		remote:   s.remote,
		hostname: s.srv.opts.Hostname,
		protocol: withProtocol(isTLS, s.user != ""),
		id:       s.id,
		rcpt:     rcpt,
		date:     now,
	})
	in := prepareInput{
		received:   received,
		returnPath: message.QuoteLocalPart(s.from),
		hostname:   s.srv.opts.Hostname,
		now:        now,
	}
	if err := message.CheckHeaderSize(raw); err != nil {
		// Before anything parses the header (the From check below
		// would hold it whole); storage checks every part's too.
		s.logTransaction(start, size, "rejected", err)
		return s.srv.reject("header_too_big", errHeaderTooBig)
	}
	if s.kind != kindInbound {
		// SPEC "Mail behaviour": a user sends as themselves, in the
		// header as in the envelope. The trusted inbound port is exempt.
		missing, err := message.CheckFrom(raw[:scanHeader(raw).end], s.user)
		if err != nil {
			s.logTransaction(start, size, "rejected", err)
			return s.srv.reject("spoofed_from", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
				Message: err.Error()})
		}
		if missing {
			in.addFrom = s.user
		}
	}
	msg := editHeader(buf, maxTraceFields, in)

	d := &storage.Delivery{
		From:      s.from,
		Source:    storage.SourceSystem,
		MessageID: msg.messageID,
		Subject:   msg.subject,
	}
	if len(s.rcpts) > 0 {
		d.Recipients = s.rcpts
		d.Copy = &storage.NewMessage{Raw: msg.delivered, InternalDate: now}
		if msg.important {
			d.Copy.Flags = []imap.Flag{flagImportant}
		}
	}
	if len(s.external) > 0 {
		d.External = s.external
		d.RelayCopy = &storage.NewMessage{Raw: msg.relayed, InternalDate: now}
	}
	if s.kind != kindInbound {
		d.Source = storage.SourceUser
		d.Sender = s.user
		// No \Seen: storage keeps the Sent copy unread until every
		// recipient has read theirs (read tracking), then marks it.
		d.SentCopy = &storage.NewMessage{Raw: msg.sent, InternalDate: now}
	}
	ctx, cancel := context.WithTimeout(context.Background(), deliverTimeout)
	defer cancel()
	if _, err := s.srv.opts.Store.Deliver(ctx, d); err != nil {
		if message.IsTooDeep(err) {
			s.logTransaction(start, len(msg.sent), "rejected", err)
			return s.srv.reject("too_deep", errTooDeep)
		}
		if message.IsTooManyParts(err) {
			s.logTransaction(start, len(msg.sent), "rejected", err)
			return s.srv.reject("too_many_parts", errTooManyParts)
		}
		if message.IsHeaderTooBig(err) {
			s.logTransaction(start, len(msg.sent), "rejected", err)
			return s.srv.reject("header_too_big", errHeaderTooBig)
		}
		s.logTransaction(start, len(msg.sent), "failed", err)
		return s.srv.reject("not_stored", errNotStored)
	}
	s.srv.metrics.Received(len(msg.sent), len(s.rcpts))
	s.logTransaction(start, len(msg.sent), "delivered", nil)
	return nil
}

// readMessage reads DATA (or the BDAT chunks) completely into one buffer
// with maxTraceFields of headroom, line endings made CRLF; the reader
// enforces MaxMessageBytes. The buffer grows with the bytes that arrive
// (nothing is reserved from the client's SIZE), and past
// message.SpoolAfter the rest goes to a spool file in Options.SpoolDir.
func (s *session) readMessage(r io.Reader) (*message.Buffer, error) {
	// Normalising may add a byte per line; the reader bounds the input.
	return message.Read(r, maxTraceFields, 2*s.srv.opts.MaxMessageSize+2, s.srv.opts.SpoolDir)
}

// readError turns a failed DATA read into the reply and a log result.
func (s *session) readError(err error) (reply *smtp.SMTPError, result string) {
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge), errors.Is(err, message.ErrTooLarge):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
			Message: fmt.Sprintf("Message exceeds the maximum size of %d bytes; nothing was stored", s.srv.opts.MaxMessageSize)}, "too large"
	case errors.Is(err, smtp.ErrTooLongLine):
		// RFC 5321 4.5.3.1.6 bounds text lines; go-smtp allows twice that.
		return &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: "Line too long; nothing was stored"}, "line too long"
	}
	return errIncomplete, "aborted"
}

// logTransaction writes the one log line of a mail transaction.
func (s *session) logTransaction(start time.Time, size int, result string, err error) {
	attrs := []slog.Attr{
		slog.String("listener", s.kind.String()),
		slog.String("id", s.id),
		slog.String("remote", s.remote.String()),
		slog.String("from", s.from),
		slog.Int("rcpts", len(s.rcpts)),
		slog.Int("size", size),
		slog.String("result", result),
		slog.Duration("duration", time.Since(start)),
	}
	if s.user != "" {
		attrs = append(attrs, slog.String("user", s.user))
	}
	level := slog.LevelInfo
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
		if result == "failed" {
			level = slog.LevelError
		}
	}
	s.srv.log.LogAttrs(context.Background(), level, "smtp transaction", attrs...)
}

// submissionSession is a session on a submission port: it adds AUTH.
type submissionSession struct {
	*session
}

// AuthMechanisms implements smtp.AuthSession. go-smtp advertises them only
// over TLS unless AllowInsecureAuth.
func (s *submissionSession) AuthMechanisms() []string {
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (s *submissionSession) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return saslReplies{sasl.NewPlainServer(func(identity, username, password string) error {
			// RFC 4616: an authorization identity other than the
			// login itself would be acting for someone else.
			if identity != "" && !strings.EqualFold(identity, username) {
				s.srv.log.Info("smtp auth failed", "listener", s.kind.String(),
					"remote", s.remote.String(), "user", auth.LogName(username), "reason", "authorization identity differs")
				s.tc.tracer().LoginFailed(username)
				return smtp.ErrAuthFailed
			}
			return s.authenticate(username, password)
		})}, nil
	case sasl.Login:
		return saslReplies{newLoginServer(s.authenticate)}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks a login through Options.Auth (package auth: the
// failed-login throttle, the login cache and the bounded pool of password
// checks). A blocked address gets 421 and the connection is closed; a
// busy checker gets 454, a temporary failure the client retries.
func (s *submissionSession) authenticate(username, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), deliverTimeout)
	defer cancel()
	r, err := s.srv.auth.Login(ctx, s.remote, username, password)
	if r.Throttled {
		s.srv.metrics.AuthThrottled()
	}
	var refused *auth.RefusedError
	switch {
	case err == nil:
		s.user = r.Address
		// Decided once per connection: from here an untraced session's
		// trace costs an atomic load per read and write.
		s.tc.tracer().LoggedIn(s.user)
		s.tc.loggedIn()
		s.srv.log.Info("smtp auth", "listener", s.kind.String(), "remote", s.remote.String(), "user", s.user,
			"cached", r.Cached)
		return nil
	case errors.As(err, &refused):
		s.srv.log.Info("smtp auth refused", "listener", s.kind.String(), "remote", s.remote.String(),
			"user", auth.LogName(username), "reason", "too many failed logins", "until", refused.Until)
		s.tc.hangUp()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
			Message: fmt.Sprintf("Too many failed logins from %s; logins from this address are refused until %s",
				s.remote, refused.Until.UTC().Format(time.RFC3339))}
	case errors.Is(err, auth.ErrFailed):
		s.srv.log.Info("smtp auth failed", "listener", s.kind.String(), "remote", s.remote.String(), "user", auth.LogName(username))
		s.srv.metrics.AuthFailed()
		s.tc.tracer().LoginFailed(strings.ToLower(strings.TrimSpace(username)))
		if r.Blocked {
			s.srv.log.Warn("too many failed logins; refusing logins from this address", "protocol", "smtp",
				"remote", s.remote.String())
		}
		return smtp.ErrAuthFailed
	case errors.Is(err, auth.ErrBusy):
		s.srv.log.Info("smtp auth busy", "listener", s.kind.String(), "remote", s.remote.String(), "user", auth.LogName(username))
		return errAuthBusy
	default:
		s.srv.log.Error("smtp auth error", "listener", s.kind.String(), "remote", s.remote.String(), "err", err)
		return errAuthTemporary
	}
}

// reject counts a refused command under reason and returns its reply.
func (s *Server) reject(reason string, reply error) error {
	s.metrics.Rejected(reason)
	return reply
}

// recipientReason names a refused RCPT for the metrics.
func recipientReason(err error) string {
	switch err {
	case errNoSuchUser:
		return "no_such_user"
	case errRelayDisabled:
		return "relay_disabled"
	case errBadAddress:
		return "bad_address"
	case errAddressLiteral:
		return "address_literal"
	case errTemporary:
		return "temporary"
	case errOverQuota:
		return "over_quota"
	}
	return "recipient_refused"
}

// newTransactionID returns the id shown in Received fields and log lines.
func newTransactionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
