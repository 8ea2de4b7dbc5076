package imapd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/trace"
)

// Defaults for the idle timeouts.
const (
	// DefaultIdleTimeout is RFC 3501 5.4's minimum autologout timer.
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultIDLETimeout is longer than the 29 minutes after which RFC 2177
	// tells clients to re-issue IDLE, so a well-behaved client is never
	// dropped while it idles.
	DefaultIDLETimeout = 31 * time.Minute
)

// go-imap (v2.0.0-beta.8, imapserver/conn.go) arms a read deadline of 30 s
// to wait for a command before login and to read a command, 5 min for each
// literal, and 35 min both to wait for a logged-in client's next command
// and to wait for DONE in IDLE. guardedConn tells them apart by that
// length: anything longer than waitThreshold is a wait, and gets pochta's
// idle timeout; anything up to commandThreshold is a command read (or the
// wait before login), and gets CommandTimeout; what lies between is a
// literal, which may extend its command to at most literalTimeout after
// the command began, however many literals it has (go-imap re-arms for
// each, so a client trickling small literals was never cut off).
const (
	waitThreshold    = 10 * time.Minute
	commandThreshold = time.Minute
	literalTimeout   = 5 * time.Minute
)

// DefaultCommandTimeout bounds the wait for a command before login and the
// reading of every command once its first byte has arrived ([limits]
// imap_command_timeout); it is go-imap's own 30 s.
const DefaultCommandTimeout = 30 * time.Second

// acceptTimeout bounds the time from accept to go-imap's first deadline;
// on the implicit-TLS port it bounds the handshake, which go-imap starts
// (by writing the greeting) without a read deadline of its own.
const acceptTimeout = 30 * time.Second

// refuseTimeout bounds answering a refused connection (with the handshake
// before it on the implicit-TLS port); maxRefusing bounds how many are
// answered at once, beyond which refused connections are closed silently.
const (
	refuseTimeout = 10 * time.Second
	maxRefusing   = 64
)

// limitedListener admits connections through Options.Connections and wraps
// each one in a guardedConn. It sits below TLS, so a refusal costs no
// handshake unless the port is implicit TLS.
type limitedListener struct {
	net.Listener
	srv         *Server
	implicitTLS bool
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteIP(c)
		// A connection is a stranger's until LOGIN succeeds, and may be
		// evicted while it is (abuse.Connections).
		g := &guardedConn{Conn: c, srv: l.srv}
		slot, why := l.srv.conns.Admit(addr, g.end)
		if slot == nil {
			l.srv.refuse(c, addr, why, l.implicitTLS)
			continue
		}
		return l.srv.guard(g, slot), nil
	}
}

// refuse answers a connection over a limit with an untagged BYE instead of
// the greeting (RFC 3501 7.1.5) and closes it.
func (s *Server) refuse(c net.Conn, addr netip.Addr, reason string, implicitTLS bool) {
	s.metrics.ConnectionRefused(reason)
	s.log.Info("connection refused", "remote", addr.String(), "reason", reason)
	s.mu.Lock()
	if s.refusing >= maxRefusing {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.refusing++
	s.mu.Unlock()
	text := "in total"
	if reason == abuse.RefusedPerAddress {
		text = "from your address"
	}
	go func() {
		defer func() {
			c.Close()
			s.mu.Lock()
			s.refusing--
			s.mu.Unlock()
		}()
		c.SetDeadline(time.Now().Add(refuseTimeout))
		if implicitTLS {
			tc := tls.Server(c, s.tlsConfig)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
		}
		io.WriteString(c, fmt.Sprintf("* BYE [UNAVAILABLE] Too many connections (%s); try again later\r\n", text))
	}()
}

// guard wraps an admitted connection and registers it, so that Close can
// end it.
func (s *Server) guard(g *guardedConn, slot *abuse.Slot) *guardedConn {
	g.Conn.SetReadDeadline(g.ending.Deadline(time.Now().Add(acceptTimeout)))
	g.slot, g.rate = slot, abuse.NewBucket(s.commandRate, nil)
	s.mu.Lock()
	s.open[g] = struct{}{}
	s.mu.Unlock()
	return g
}

// guardedConn keeps the limits that work between commands, by watching the
// read deadlines go-imap sets (which reach it through tls.Conn after
// STARTTLS and on the implicit-TLS port too):
//
//   - The command rate: go-imap arms a deadline twice per command (to wait
//     for it, then to read it), so each costs half a token, and waiting
//     before arming it delays reading the next command.
//   - The timeouts: a wait for the next command gets IdleTimeout, or
//     IDLETimeout while the session is in IDLE (setIdling); a command
//     (and the wait before login) CommandTimeout; its literals together
//     literalTimeout. A read that times out ends the connection for good
//     (abuse.Ending): the client gets "* BYE" and the connection closes
//     (Read).
//   - Eviction: a stranger's connection evicted by abuse.Connections ends
//     the same way, with its own BYE text.
type guardedConn struct {
	net.Conn
	srv   *Server
	slot  *abuse.Slot
	rate  *abuse.Bucket  // nil without a command rate
	trace *trace.Session // set before go-imap starts; nil when not traced

	ending  abuse.Ending
	byeOnce sync.Once

	mu       sync.Mutex
	waiting  bool      // the current deadline is a wait for a command or DONE
	idling   bool      // the session is in IDLE
	cmdStart time.Time // when the command being read began; zero while waiting
	imapConn *protocol.Conn
}

func (c *guardedConn) SetReadDeadline(t time.Time) error {
	if wait := c.rate.Take(0.5); wait > 0 {
		c.srv.metrics.CommandDelayed()
		time.Sleep(wait)
		t = t.Add(wait)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	d := t.Sub(now)
	c.waiting = !t.IsZero() && d > waitThreshold
	switch {
	case t.IsZero():
	case c.waiting:
		c.cmdStart = time.Time{}
		t = now.Add(c.waitTimeout())
	case d <= commandThreshold:
		c.cmdStart = now
		t = now.Add(c.srv.commandTimeout)
	default: // a literal
		if c.cmdStart.IsZero() {
			c.cmdStart = now
		}
		if limit := c.cmdStart.Add(literalTimeout); t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(c.ending.Deadline(t))
}

func (c *guardedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *guardedConn) waitTimeout() time.Duration {
	if c.idling {
		return c.srv.idleCmdTimeout
	}
	return c.srv.idleTimeout
}

// setIdling marks the session as in IDLE or not. go-imap starts the
// session's Idle on its own goroutine while it arms the deadline for DONE,
// in either order, so entering IDLE re-arms a wait already armed. Leaving
// IDLE needs no re-arming: go-imap arms the next wait itself.
func (c *guardedConn) setIdling(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idling = on
	if on && c.waiting {
		c.Conn.SetReadDeadline(c.ending.Deadline(time.Now().Add(c.waitTimeout())))
	}
}

// Read ends the connection when a read deadline expires: it says BYE
// (through go-imap, which writes through TLS) and closes. go-imap would
// otherwise take a timeout while waiting for a command as "no command yet"
// and go on to read one under a fresh deadline, and a timeout in IDLE as a
// server error. Read runs on go-imap's goroutine, which is not writing
// while it reads, so the BYE goes out before go-imap sees the error.
func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.ending.End(abuse.EndTimeout)
		c.byeOnce.Do(c.bye)
	}
	return n, err
}

// bye says why the connection ends and closes it.
func (c *guardedConn) bye() {
	c.mu.Lock()
	ic := c.imapConn
	c.mu.Unlock()
	text := "Autologout; idle for too long"
	switch {
	case c.ending.Reason() == abuse.EndEvicted:
		text = "Too many connections are waiting to log in; yours was the oldest. Try again"
	case c.ending.Reason() == abuse.EndLoginTimeout:
		text = "Not logged in in time; closing the connection"
	case !c.waitingNow():
		text = "Command not completed in time; closing the connection"
	}
	if ic == nil {
		c.Conn.Close()
		return
	}
	c.Conn.SetWriteDeadline(time.Now().Add(refuseTimeout))
	ic.ByeNow(text) // closes the connection; Bye would wait for the command this read belongs to
}

func (c *guardedConn) waitingNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

// end ends the connection for reason: go-imap's read in progress (or its
// next one) times out, and Read says BYE and closes.
func (c *guardedConn) end(reason string) {
	if c.ending.End(reason) {
		c.srv.log.Info("connection ended", "remote", remoteIP(c.Conn).String(), "reason", reason)
		c.Conn.SetReadDeadline(abuse.PastDeadline)
	}
}

// started gives the connection its go-imap Conn, for BYE. A nil receiver
// is allowed.
func (c *guardedConn) started(ic *protocol.Conn) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.imapConn = ic
	c.mu.Unlock()
}

func (c *guardedConn) Close() error {
	c.srv.mu.Lock()
	delete(c.srv.open, c)
	c.srv.mu.Unlock()
	c.slot.Release()
	return c.Conn.Close()
}

// tracer returns the connection's protocol trace, nil when there is none.
// A nil receiver is allowed.
func (c *guardedConn) tracer() *trace.Session {
	if c == nil {
		return nil
	}
	return c.trace
}

// guardOf finds the guardedConn under go-imap's connection (a *tls.Conn
// after STARTTLS and on the implicit-TLS port), or nil.
func guardOf(c net.Conn) *guardedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	g, _ := c.(*guardedConn)
	return g
}

// remoteIP returns the peer's IP, or the zero Addr for non-IP transports.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// loggedIn marks the connection's session as logged in: it is no longer
// a stranger's and cannot be evicted. A nil receiver is allowed.
func (c *guardedConn) loggedIn() {
	if c != nil {
		c.slot.LoggedIn()
	}
}
