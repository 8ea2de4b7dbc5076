package abuse

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Reasons a connection is ended by its server, for replies and logs.
const (
	// EndTimeout: a command (or DATA, a literal, an IDLE) did not complete
	// within its bound.
	EndTimeout = "timeout"
	// EndEvicted: the connection was a stranger's pre-login connection,
	// evicted by Connections to make room for a newcomer.
	EndEvicted = "evicted"
	// EndLoginTimeout: the connection had not logged in within the login
	// timeout (Connections.SetLoginTimeout).
	EndLoginTimeout = "login_timeout"
)

// PastDeadline is a read deadline that has expired: armed, it makes the
// next read fail at once with a timeout.
var PastDeadline = time.Unix(1, 0)

// Ending is the part of a connection wrapper that smtpd and imapd share to
// end a connection from below their protocol libraries, which would
// otherwise take a read timeout as a pause and read on under a fresh
// deadline (go-smtp does so inside AUTH; go-imap re-arms per literal). It
// sits below TLS, so it never writes: once a connection is ending, every
// read deadline the library arms is moved into the past, every read fails
// at once with a timeout, and the library's own goroutine answers
// (go-smtp's 421; imapd writes BYE through go-imap) and closes. The zero
// Ending is ready; it is safe for concurrent use.
type Ending struct {
	mu     sync.Mutex
	reason string
}

// End marks the connection as ending for reason; it returns false when it
// already was (the first reason stays). The caller then arms PastDeadline
// on the connection, to wake a read in progress.
func (e *Ending) End(reason string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reason != "" {
		return false
	}
	e.reason = reason
	return true
}

// Reason says why the connection is ending; "" while it is not.
func (e *Ending) Reason() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reason
}

// Deadline is the read deadline to arm instead of t: PastDeadline once the
// connection is ending.
func (e *Ending) Deadline(t time.Time) time.Time {
	if e.Reason() != "" {
		return PastDeadline
	}
	return t
}

// Read records the outcome of one read: a timeout ends the connection
// (EndTimeout), so that no later deadline revives it.
func (e *Ending) Read(err error) {
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		e.End(EndTimeout)
	}
}
