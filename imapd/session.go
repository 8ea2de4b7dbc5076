package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/imapd/wire"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

// maxAuthFailures is how many failed logins one connection gets before it
// is dropped, so a password guesser has to reconnect (and show up in logs).
const maxAuthFailures = 5

// hierarchyDelim is pochta's mailbox hierarchy delimiter (storage uses "/").
const hierarchyDelim = '/'

// session is one IMAP connection. protocol calls its methods from the
// connection's goroutine one at a time, except Idle, which runs on its own
// goroutine while the connection waits for DONE (no other method runs then).
type session struct {
	srv  *Server
	conn *protocol.Conn
	// ctx carries the session as the origin of its storage writes.
	ctx context.Context
	log *slog.Logger
	// remote is the client's address, limits its connection's limits (nil
	// for a connection that did not come through a limitedListener).
	remote netip.Addr
	limits *guardedConn

	// origin tags this session's writes, so it can skip the events they
	// cause (it answers for them itself).
	origin storage.Origin

	user         string // canonical address once logged in
	authFailures int
	view         *mailboxView // selected mailbox, or nil
}

var _ protocol.Session = (*session)(nil)

func newSession(srv *Server, conn *protocol.Conn) *session {
	nc := conn.NetConn()
	s := &session{srv: srv, conn: conn, remote: remoteIP(nc), limits: guardOf(nc)}
	s.limits.started(conn)
	s.origin = storage.Origin{Session: srv.sessionIDs.Add(1)}
	s.ctx = storage.WithOrigin(srv.ctx, s.origin)
	s.log = srv.log.With("remote", nc.RemoteAddr().String())
	return s
}

// guard is deferred by every session method that serves a command: it
// counts the command and recovers a panic (see recovered).
func (s *session) guard(cmd string, errp *error) {
	s.srv.metrics.Command(cmd)
	s.recovered(cmd, recover(), errp)
}

// protect is guard for the calls that are not commands (Poll, Close).
func (s *session) protect(what string, errp *error) {
	s.recovered(what, recover(), errp)
}

// recovered turns a panic into a logged, counted error and closes the
// connection, whose state can no longer be trusted. Every lock in this
// package is released by defer, so a panic leaves no mutex held and the
// other sessions go on.
func (s *session) recovered(what string, v any, errp *error) {
	if v == nil {
		return
	}
	s.srv.metrics.Panic()
	s.log.Error("recovered panic; closing the connection",
		"command", what, "user", s.user, "panic", v, "stack", string(debug.Stack()))
	s.conn.NetConn().Close()
	if errp != nil {
		*errp = errServerBug
	}
}

var errServerBug = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeServerBug,
	Text: "Internal server error; the problem has been logged",
}

func imapNo(code imap.ResponseCode, text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

// storageError maps a storage error to the IMAP response the client gets.
// Unexpected errors are logged and reported without their details.
func (s *session) storageError(cmd string, err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return imapNo(imap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, storage.ErrExists):
		return imapNo(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, storage.ErrProtected):
		return imapNo(imap.ResponseCodeCannot, "INBOX, Sent, Drafts and Trash cannot be deleted or renamed")
	case errors.Is(err, storage.ErrInvalid):
		return imapNo(imap.ResponseCodeCannot, "Invalid mailbox name or value")
	case errors.Is(err, storage.ErrClosed), errors.Is(err, context.Canceled):
		return imapNo(imap.ResponseCodeUnavailable, "The server is shutting down")
	case errors.Is(err, storage.ErrOverQuota):
		return imapNo(imap.ResponseCodeOverQuota, "Over quota: this would pass the storage limit of your account; nothing was stored")
	}
	s.log.Error("storage error", "command", cmd, "user", s.user, "err", err)
	return imapNo(imap.ResponseCodeServerBug, "Internal server error; the problem has been logged")
}

// destError is storageError for the destination of APPEND, COPY and MOVE,
// where a missing mailbox is TRYCREATE (RFC 3501 6.3.11).
func (s *session) destError(cmd string, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return imapNo(imap.ResponseCodeTryCreate, "No such mailbox")
	}
	return s.storageError(cmd, err)
}

// Close implements protocol.Session.
func (s *session) Close() (err error) {
	defer s.protect("close", &err)
	s.unselect()
	s.srv.removeSession(s)
	return nil
}

// Login implements protocol.Session; AUTHENTICATE PLAIN ends here too.
// The password goes through Options.Auth (package auth: the failed-login
// throttle, the login cache and the bounded pool of password checks). A
// blocked address gets NO [UNAVAILABLE] without its password being
// checked; a busy checker NO [UNAVAILABLE] too, to be retried.
func (s *session) Login(username, password string) (err error) {
	defer s.guard("LOGIN", &err)
	r, err := s.srv.auth.Login(s.ctx, s.remote, username, password)
	if r.Throttled {
		s.srv.metrics.AuthThrottled()
	}
	var refused *auth.RefusedError
	switch {
	case err == nil:
	case errors.As(err, &refused):
		s.log.Info("login refused", "username", username, "reason", "too many failed logins", "until", refused.Until)
		s.countAuthFailure(username)
		return imapNo(imap.ResponseCodeUnavailable, fmt.Sprintf(
			"Too many failed logins from %s; logins from this address are refused until %s",
			s.remote, refused.Until.UTC().Format(time.RFC3339)))
	case errors.Is(err, auth.ErrFailed):
		s.srv.metrics.AuthFailed()
		s.log.Info("login failed", "username", auth.LogName(username), "failures", s.authFailures+1)
		if r.Blocked {
			s.log.Warn("too many failed logins; refusing logins from this address", "protocol", "imap")
		}
		s.limits.tracer().LoginFailed(username)
		s.countAuthFailure(username)
		return protocol.ErrAuthFailed
	case errors.Is(err, auth.ErrBusy):
		s.log.Info("login busy", "username", username)
		return imapNo(imap.ResponseCodeUnavailable, "Too many logins are being checked; try again later")
	default:
		return s.storageError("LOGIN", err)
	}
	s.user = r.Address
	s.srv.loggedIn(s, s.user)
	// A deletion committed between Authenticate and loggedIn found no
	// session to end; this one must not live on for a user that is gone.
	if _, err := s.srv.store.User(s.ctx, s.user); errors.Is(err, storage.ErrNotFound) {
		s.srv.loggedIn(s, "")
		s.user = ""
		return imapNo(imap.ResponseCodeAuthenticationFailed, "Authentication failed")
	}
	// Decided once per connection: from here an untraced session's trace
	// costs an atomic load per read and write.
	s.limits.tracer().LoggedIn(s.user)
	s.limits.loggedIn()
	s.log = s.log.With("user", s.user)
	s.log.Info("logged in", "cached", r.Cached)
	return nil
}

// countAuthFailure counts a failed or refused login on this connection and
// drops the connection after maxAuthFailures.
func (s *session) countAuthFailure(username string) {
	s.authFailures++
	if s.authFailures >= maxAuthFailures {
		s.log.Warn("too many failed logins; dropping the connection", "username", username)
		s.conn.NetConn().Close()
	}
}

// Namespace implements protocol.Session: one personal namespace
// with no prefix (RFC 2342); nothing is shared between users.
func (s *session) Namespace() (_ *imap.NamespaceData, err error) {
	defer s.guard("NAMESPACE", &err)
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: hierarchyDelim}},
	}, nil
}

// AppendLimit implements protocol.Session (RFC 7889).
func (s *session) AppendLimit() uint32 {
	return s.srv.appendLimit
}

// Create implements protocol.Session.
func (s *session) Create(name string, options *imap.CreateOptions) (err error) {
	defer s.guard("CREATE", &err)
	if options != nil && len(options.SpecialUse) > 0 {
		return imapNo("USEATTR", "Special-use attributes cannot be set") // RFC 6154 5.3
	}
	// A trailing delimiter only says the client intends to create children
	// (RFC 3501 6.3.3).
	name = strings.TrimSuffix(name, string(hierarchyDelim))
	if err := s.srv.store.CreateMailbox(s.ctx, s.user, name); err != nil {
		return s.storageError("CREATE", err)
	}
	return nil
}

// Delete implements protocol.Session.
func (s *session) Delete(name string) (err error) {
	defer s.guard("DELETE", &err)
	if err := s.srv.store.DeleteMailbox(s.ctx, s.user, name); err != nil {
		return s.storageError("DELETE", err)
	}
	return nil
}

// Rename implements protocol.Session.
func (s *session) Rename(name, newName string, options *imap.RenameOptions) (err error) {
	defer s.guard("RENAME", &err)
	newName = strings.TrimSuffix(newName, string(hierarchyDelim))
	if err := s.srv.store.RenameMailbox(s.ctx, s.user, name, newName); err != nil {
		return s.storageError("RENAME", err)
	}
	return nil
}

// Subscribe implements protocol.Session.
func (s *session) Subscribe(name string) (err error) {
	defer s.guard("SUBSCRIBE", &err)
	if err := s.srv.store.SetSubscribed(s.ctx, s.user, name, true); err != nil {
		return s.storageError("SUBSCRIBE", err)
	}
	return nil
}

// Unsubscribe implements protocol.Session.
func (s *session) Unsubscribe(name string) (err error) {
	defer s.guard("UNSUBSCRIBE", &err)
	if err := s.srv.store.SetSubscribed(s.ctx, s.user, name, false); err != nil {
		return s.storageError("UNSUBSCRIBE", err)
	}
	return nil
}

// Status implements protocol.Session.
func (s *session) Status(name string, options *imap.StatusOptions) (_ *imap.StatusData, err error) {
	defer s.guard("STATUS", &err)
	st, err := s.srv.store.MailboxStatus(s.ctx, s.user, name)
	if err != nil {
		return nil, s.storageError("STATUS", err)
	}
	data, err := s.statusData(st, options)
	if err != nil {
		return nil, err
	}
	// Clients match the response to their command by name (go-imap's client does,
	// exactly), so echo the name as given; INBOX differs only in case.
	data.Mailbox = name
	return data, nil
}

// statusData fills every item asked for: protocol writes each requested
// item and dereferences its pointer.
func (s *session) statusData(st *storage.MailboxStatus, options *imap.StatusOptions) (*imap.StatusData, error) {
	data := &imap.StatusData{Mailbox: st.Name}
	if options.NumMessages {
		n := st.Messages
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = st.UIDNext
	}
	if options.UIDValidity {
		data.UIDValidity = st.UIDValidity
	}
	if options.NumUnseen {
		n := st.Unseen
		data.NumUnseen = &n
	}
	if options.Size {
		n := st.Size
		data.Size = &n
	}
	if options.HighestModSeq {
		data.HighestModSeq = st.HighestModSeq
	}
	if options.NumRecent {
		n, err := s.countRecent(st.ID)
		if err != nil {
			return nil, s.storageError("STATUS", err)
		}
		data.NumRecent = &n
	}
	if options.AppendLimit {
		n := s.srv.appendLimit
		data.AppendLimit = &n
	}
	if options.NumDeleted || options.DeletedStorage {
		// Not kept as a counter: count the \Deleted messages.
		count, size, err := s.countDeleted(st.ID)
		if err != nil {
			return nil, s.storageError("STATUS", err)
		}
		data.NumDeleted = &count
		data.DeletedStorage = &size
	}
	return data, nil
}

// firstUnseen returns the sequence number, in the session's fresh view, of
// the first message without \Seen, or 0; it reads flags a chunk at a time.
func (s *session) firstUnseen(mailboxID uint64) (uint32, error) {
	refs, _, _ := s.view.visible()
	for chunk := range slices.Chunk(refs, loadChunk) {
		msgs, err := s.srv.store.Messages(s.ctx, s.user, mailboxID, refUIDs(chunk), storage.LoadOptions{})
		if err != nil {
			return 0, fmt.Errorf("read flags for UNSEEN: %w", err)
		}
		seen := make(map[imap.UID]bool, len(msgs))
		for _, m := range msgs {
			seen[m.UID] = hasFlag(m.Flags, imap.FlagSeen)
		}
		for _, r := range chunk {
			if isSeen, ok := seen[r.uid]; ok && !isSeen {
				return r.seq, nil
			}
		}
	}
	return 0, nil
}

func (s *session) countDeleted(mailboxID uint64) (count uint32, size int64, err error) {
	uids, err := s.srv.store.UIDs(s.ctx, s.user, mailboxID)
	if err != nil {
		return 0, 0, err
	}
	for chunk := range slices.Chunk(uids, loadChunk) {
		msgs, err := s.srv.store.Messages(s.ctx, s.user, mailboxID, chunk, storage.LoadOptions{})
		if err != nil {
			return 0, 0, err
		}
		for _, m := range msgs {
			if hasFlag(m.Flags, imap.FlagDeleted) {
				count++
				size += m.Size
			}
		}
	}
	return count, size, nil
}

// Append implements protocol.Session. protocol has already refused a
// literal over AppendLimit; a client that disconnects mid-literal gets
// nothing stored, because nothing is written before the whole message is
// read.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (_ *imap.AppendData, err error) {
	defer s.guard("APPEND", &err)
	size := r.Size()
	if size > int64(s.srv.appendLimit) {
		return nil, imapNo(imap.ResponseCodeTooBig, "Message is larger than the APPEND limit")
	}
	raw, err := readAppended(r, size)
	if err != nil {
		return nil, err
	}
	msg := &storage.NewMessage{
		Raw:          raw,
		Flags:        storableFlags(options.Flags),
		InternalDate: options.Time,
	}
	res, err := s.srv.store.Append(s.ctx, s.user, name, msg)
	if err != nil {
		if refusal := intakeRefusal(err); refusal != nil {
			return nil, refusal
		}
		return nil, s.destError("APPEND", err)
	}
	if v := s.view; v != nil && res.MailboxID == v.box.key.id {
		// Let the EXISTS reach this client before the tagged OK.
		v.box.applyOwn(storage.EventAppend, []imap.UID{res.UID})
	}
	return &imap.AppendData{UID: res.UID, UIDValidity: res.UIDValidity}, nil
}

// readAppended reads the message of an APPEND literal of size bytes (at
// most the APPEND limit, checked by the caller). The announced size bounds
// nothing but that check: the buffer grows with the bytes that arrive.
//
// A normal literal's lines all end in CRLF once read (bare CR and LF are
// turned into CRLF, message.ReadAll). A literal8 (~{n}, RFC 3516) is kept
// byte for byte: the client said the message is binary, and a binary part
// (Content-Transfer-Encoding: binary) must come back exactly as sent.
func readAppended(r imap.LiteralReader, size int64) ([]byte, error) {
	if l, ok := r.(*wire.Literal); ok && l.Binary {
		raw, err := io.ReadAll(io.LimitReader(r, size))
		if err != nil {
			return nil, fmt.Errorf("read literal8: %w", err)
		}
		return raw, nil
	}
	return message.ReadAll(io.LimitReader(r, size), 0, 2*size+2)
}

// Select implements protocol.Session (SELECT and EXAMINE).
func (s *session) Select(name string, options *imap.SelectOptions) (_ *imap.SelectData, err error) {
	cmd := "SELECT"
	if options.ReadOnly {
		cmd = "EXAMINE"
	}
	defer s.guard(cmd, &err)
	s.unselect()
	st, err := s.srv.store.MailboxStatus(s.ctx, s.user, name)
	if err != nil {
		return nil, s.storageError(cmd, err)
	}
	// On a database several nodes share, what they changed in the mailbox
	// is announced first, so the FLAGS below has every keyword another
	// node set before this SELECT (imaptest's stress mode through two
	// nodes found one missing). A failure only leaves it to the next hint.
	if err := storage.SyncMailbox(s.ctx, s.srv.store, st.ID); err != nil && s.ctx.Err() == nil {
		s.log.Warn("SELECT: reading other nodes' changes first failed", "err", err)
	}
	box, err := s.srv.reg.acquire(s.ctx, s.user, st.ID)
	if err != nil {
		return nil, s.storageError(cmd, err)
	}
	a, numMessages, maxUID := box.attach(s)
	// The changes up to the status read are, as far as this session
	// knows, published (SessionTracker.Told).
	box.tracker.Published(st.HighestModSeq)
	s.view = &mailboxView{box: box, tracker: a.tracker, wake: a.wake, readOnly: options.ReadOnly}
	numRecent := box.claimRecent(a, options.ReadOnly)
	s.view.reportedRecent = numRecent
	if !s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		// IMAP4rev2 has no \Recent (RFC 9051 appendix E); its messages
		// are still claimed, so they are not recent for anyone else.
		s.view.att = a
	}

	// The status was read before the UID list; a message that arrived in
	// between must not be at or above the UIDNEXT we announce.
	uidNext := st.UIDNext
	if maxUID >= uidNext {
		uidNext = maxUID + 1
	}
	flags := box.mailboxFlags()
	permanent := []imap.Flag{}
	if !options.ReadOnly {
		// RFC 3501 6.3.2: a read-only selection has no permanent flags.
		permanent = append(append(permanent, flags...), imap.FlagWildcard)
	}
	data := &imap.SelectData{
		Flags:          flags,
		PermanentFlags: permanent,
		NumMessages:    numMessages,
		NumRecent:      numRecent,
		UIDNext:        uidNext,
		UIDValidity:    st.UIDValidity,
		HighestModSeq:  st.HighestModSeq,
	}
	s.view.uidValidity = st.UIDValidity
	if caps := s.conn.EnabledCaps(); !caps.Has(imap.CapIMAP4rev2) && !caps.Has(imap.CapQResync) && st.Unseen > 0 {
		// RFC 3501 6.3.1: an IMAP4rev1 client is told the first unseen
		// message's sequence number (IMAP4rev2 dropped it). Finding it
		// reads flags from the start of the mailbox, so a QRESYNC client,
		// whose resync must touch only the changes (and which learns the
		// flags from them), is not told.
		if data.FirstUnseenSeqNum, err = s.firstUnseen(st.ID); err != nil {
			s.unselect()
			return nil, s.storageError(cmd, err)
		}
	}
	if s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		// RFC 9051 6.3.2: an IMAP4rev2 client gets the mailbox's LIST
		// response too; IMAP4rev1 clients are spared the surprise.
		if data.List, err = s.listOne(st.Name); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// Unselect implements protocol.Session (UNSELECT, CLOSE, and the implicit
// close of SELECT while selected).
func (s *session) Unselect() (err error) {
	defer s.guard("UNSELECT", &err)
	s.unselect()
	return nil
}

func (s *session) unselect() {
	if s.view == nil {
		return
	}
	s.srv.reg.detach(s.view.box, s)
	s.view = nil
}

// Poll implements protocol.Session: protocol calls it after each command
// (NOOP and CHECK are nothing else) to flush pending updates.
func (s *session) Poll(w *protocol.UpdateWriter, allowExpunge bool) (err error) {
	defer s.protect("poll", &err)
	if s.view == nil {
		return nil
	}
	if err := s.view.tracker.Poll(w, allowExpunge); err != nil {
		return err
	}
	return s.view.writeRecentChange(w)
}

// Idle implements protocol.Session (RFC 2177): what is pending is
// written at once, then every update as it is queued, until DONE.
func (s *session) Idle(w *protocol.UpdateWriter, stop <-chan struct{}) (err error) {
	defer s.guard("IDLE", &err)
	if s.limits != nil {
		// The wait for DONE gets the IDLE timeout, not the idle one.
		s.limits.setIdling(true)
		defer s.limits.setIdling(false)
	}
	v := s.view
	if v == nil {
		<-stop
		return nil
	}
	for {
		if err := v.tracker.Poll(w, true); err != nil {
			return err
		}
		if err := v.writeRecentChange(w); err != nil {
			return err
		}
		select {
		case <-v.wake:
		case <-stop:
			return nil
		}
	}
}

// selected returns the view, or an error if the mailbox is gone from under
// the session (protocol only calls selected-state methods when selected).
func (s *session) selected() (*mailboxView, error) {
	if s.view == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	return s.view, nil
}

// storableFlags drops what a client cannot set: \Recent is the server's
// (RFC 3501 2.3.2) and pochta does not keep it.
func storableFlags(flags []imap.Flag) []imap.Flag {
	out := make([]imap.Flag, 0, len(flags))
	for _, f := range flags {
		if strings.EqualFold(string(f), `\Recent`) || f == "" {
			continue
		}
		dup := false
		for _, g := range out {
			if strings.EqualFold(string(f), string(g)) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, f)
		}
	}
	return out
}

func hasFlag(flags []imap.Flag, flag imap.Flag) bool {
	for _, f := range flags {
		if strings.EqualFold(string(f), string(flag)) {
			return true
		}
	}
	return false
}

// intakeRefusal is the tagged NO for a message the intake checks refuse
// (package message: MIME nesting, part and header limits), or nil for another
// error. APPEND and MULTIAPPEND answer alike.
func intakeRefusal(err error) error {
	switch {
	case message.IsTooDeep(err):
		return imapNo(imap.ResponseCodeCannot, fmt.Sprintf(
			"Message is nested deeper than %d MIME levels; nothing was stored", message.MaxNesting))
	case message.IsTooManyParts(err):
		return imapNo(imap.ResponseCodeCannot, fmt.Sprintf(
			"Message has more than %d MIME parts; nothing was stored", message.MaxParts))
	case message.IsHeaderTooBig(err):
		return imapNo(imap.ResponseCodeCannot, fmt.Sprintf(
			"Message has a header section larger than %d KiB; nothing was stored", message.MaxHeaderBytes>>10))
	}
	return nil
}
