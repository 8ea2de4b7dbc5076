// Package trace owns pochta's protocol trace ([log] trace_users): for the
// users named there, every line of their SMTP and IMAP sessions is written to
// the log, one slog record per protocol line ("protocol trace", level info,
// attributes proto, session, remote, user, dir "C" or "S", line). It is what
// an operator reads when one person's phone does not show mail.
//
// What it promises:
//   - Credentials never reach the log: the password of IMAP LOGIN (atom,
//     quoted or literal), the initial response and every continuation line of
//     IMAP AUTHENTICATE and of SMTP AUTH are written as "***".
//   - Message bodies never reach the log: SMTP DATA and BDAT contents and the
//     literals of IMAP APPEND are written as "<message body, N bytes>", and
//     every other literal (a FETCH of a message, a search string) as
//     "<literal, N bytes>".
//   - The user is known only after login, so each connection keeps its last
//     pendingLines lines (each cut to maxLine bytes) until then. A login as a
//     traced user writes them out and traces the rest of the connection; a
//     login as anyone else drops them and stops tracing the connection, after
//     which the connection costs one atomic load per read or write. A failed
//     login that names a traced user traces the connection too, because "my
//     password is not accepted" is what the trace is for; it is bounded by
//     the failed-login limits.
//   - With nobody traced, connections get no Session at all (nil) and cost
//     nothing. The list is swapped atomically by Set (SIGHUP): sessions that
//     log in afterwards see the new list, sessions already logged in keep
//     their decision.
//
// How the lines are seen: TLS (implicit, and STARTTLS, which go-smtp and
// go-imap perform inside the library) means the cleartext exists only inside
// the protocol libraries, whose only tap is a debug io.Writer (go-smtp's
// Server.Debug, go-imap's Options.DebugWriter) that receives what the library
// reads and what it writes. Those writers are per library server and get both
// directions through the same Write, so the servers run one library server
// per connection with that connection's Session as the writer, and Session
// tells the direction by its caller: io.TeeReader (the library read it: the
// client's line) or io.MultiWriter (the library wrote it: the server's).
package trace

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
)

// Limits on what one connection keeps before login.
const (
	// pendingLines is how many lines before login are kept; older ones are
	// dropped (and counted in a note when the rest is written out).
	pendingLines = 50
	// maxLine is how much of one line is logged; the rest is replaced by a
	// note with the line's length.
	maxLine = 1000
)

// Protocol says which protocol a Session speaks, so its lines are parsed
// and masked by the right rules.
type Protocol int

// The protocols a Session can trace.
const (
	SMTP Protocol = iota + 1
	IMAP
)

func (p Protocol) String() string {
	switch p {
	case SMTP:
		return "smtp"
	case IMAP:
		return "imap"
	}
	return "unknown"
}

// Tracer holds the set of traced users and writes their sessions to its
// logger. It is safe for concurrent use; a nil *Tracer traces nobody.
type Tracer struct {
	log   *slog.Logger
	users atomic.Pointer[map[string]struct{}]
}

// New returns a Tracer that traces nobody until Set; log nil means
// slog.Default().
func New(log *slog.Logger) *Tracer {
	if log == nil {
		log = slog.Default()
	}
	return &Tracer{log: log}
}

// Set replaces the traced users. Addresses compare case-insensitively, as
// logins do.
func (t *Tracer) Set(users []string) {
	set := make(map[string]struct{}, len(users))
	for _, u := range users {
		if u = strings.ToLower(strings.TrimSpace(u)); u != "" {
			set[u] = struct{}{}
		}
	}
	t.users.Store(&set)
}

// Enabled reports whether user's sessions are traced.
func (t *Tracer) Enabled(user string) bool {
	if t == nil {
		return false
	}
	set := t.users.Load()
	if set == nil || len(*set) == 0 {
		return false
	}
	_, ok := (*set)[strings.ToLower(strings.TrimSpace(user))]
	return ok
}

// any reports whether anybody is traced.
func (t *Tracer) any() bool {
	if t == nil {
		return false
	}
	set := t.users.Load()
	return set != nil && len(*set) > 0
}

// Session starts the trace of one new connection from remote. It returns
// nil when nobody is traced; every Session method accepts a nil receiver.
func (t *Tracer) Session(proto Protocol, remote string) *Session {
	if !t.any() {
		return nil
	}
	var id [6]byte
	rand.Read(id[:])
	s := &Session{tracer: t, proto: proto, id: hex.EncodeToString(id[:]), remote: remote}
	switch proto {
	case SMTP:
		s.parser = &smtpParser{}
	default:
		s.parser = &imapParser{}
	}
	return s
}

// Writer returns s as the io.Writer to give the protocol library as its
// debug writer, or a nil io.Writer for a nil s (so that the library does not
// wrap its connection at all).
func (s *Session) Writer() io.Writer {
	if s == nil {
		return nil
	}
	return s
}
