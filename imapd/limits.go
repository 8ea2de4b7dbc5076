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
// to read a command, 5 min for an APPEND literal, and 35 min both to wait
// for a logged-in client's next command and to wait for DONE in IDLE.
// guardedConn tells the waits from the reads by that length: anything
// longer than waitThreshold is a wait, and gets pochta's own timeout.
const waitThreshold = 10 * time.Minute

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
		release, why := l.srv.conns.Open(addr)
		if release == nil {
			l.srv.refuse(c, addr, why, l.implicitTLS)
			continue
		}
		return l.srv.guard(c, release), nil
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
func (s *Server) guard(c net.Conn, release func()) *guardedConn {
	c.SetReadDeadline(time.Now().Add(acceptTimeout))
	g := &guardedConn{Conn: c, srv: s, release: release, rate: abuse.NewBucket(s.commandRate, nil)}
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
//   - The idle timeouts: a wait for the next command gets IdleTimeout, or
//     IDLETimeout while the session is in IDLE (setIdling), and a read
//     that times out closes the connection (Read).
type guardedConn struct {
	net.Conn
	srv     *Server
	release func()
	rate    *abuse.Bucket  // nil without a command rate
	trace   *trace.Session // set before go-imap starts; nil when not traced

	mu      sync.Mutex
	waiting bool // the current deadline is a wait for a command or DONE
	idling  bool // the session is in IDLE

	drain drainState // its part in Close (shutdown.go)
}

func (c *guardedConn) SetReadDeadline(t time.Time) error {
	if c.drain.armed(t) {
		return net.ErrClosed // Close said BYE at this command boundary
	}
	if wait := c.rate.Take(0.5); wait > 0 {
		c.srv.metrics.CommandDelayed()
		time.Sleep(wait)
		t = t.Add(wait)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = !t.IsZero() && time.Until(t) > waitThreshold
	if c.waiting {
		t = time.Now().Add(c.waitTimeout())
	}
	return c.Conn.SetReadDeadline(t)
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
		c.Conn.SetReadDeadline(time.Now().Add(c.waitTimeout()))
	}
}

// Read closes the connection when a read deadline expires. go-imap would
// otherwise take a timeout while waiting for a command as "no command yet"
// and go on to read one under a fresh 30 s deadline, and a timeout in IDLE
// as a server error; closed, the session ends at once.
func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.Conn.Close()
	}
	return n, err
}

func (c *guardedConn) Close() error {
	c.drain.closed()
	c.srv.mu.Lock()
	delete(c.srv.open, c)
	c.srv.mu.Unlock()
	c.release()
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

// pause waits d, or less if the server closes.
func (s *Server) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// remoteIP returns the peer's IP, or the zero Addr for non-IP transports.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
