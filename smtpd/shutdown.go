package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// errShuttingDown ends a session that was told the server is shutting
// down; it wraps net.ErrClosed so go-smtp ends the session quietly.
var errShuttingDown = fmt.Errorf("smtpd: connection closed for shutdown: %w", net.ErrClosed)

// Shutdown stops accepting connections, ends idle ones (they are told
// "421 4.3.2 ... Service shutting down", see sayShuttingDown), lets
// every transaction in flight (MAIL accepted) run to the reply to its DATA,
// and returns when all connections are gone. If ctx ends first, the
// remaining connections are closed at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	listeners := append([]net.Listener(nil), s.listeners...)
	conns := make([]*trackedConn, 0, len(s.conns))
	var servers []*smtp.Server
	for c := range s.conns {
		conns = append(conns, c)
		if c.gs != nil {
			servers = append(servers, c.gs)
		}
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.drain()
	}
	for _, l := range listeners {
		l.Close()
	}

	errs := make(chan error, len(servers))
	for _, gs := range servers {
		go func() { errs <- gs.Shutdown(ctx) }()
	}
	var first error
	for range servers {
		err := <-errs
		if errors.Is(err, smtp.ErrServerClosed) {
			err = nil // Shutdown called twice
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if ctx.Err() != nil {
		for _, gs := range servers {
			gs.Close()
		}
		return fmt.Errorf("smtpd: shutdown: %w", ctx.Err())
	}

	done := make(chan struct{})
	go func() {
		s.refusals.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("smtpd: shutdown: %w", ctx.Err())
	}
	if first != nil {
		return fmt.Errorf("smtpd: shutdown: %w", first)
	}
	return nil
}

// The shutdown reply. go-smtp answers a read that times out with "421
// 4.4.2 Idle timeout", which would tell a client at shutdown the wrong
// thing, so the connection says "421 4.3.2 ... shutting down" itself, at a
// moment go-smtp writes nothing: on go-smtp's own goroutine, between
// commands, either as go-smtp arms the read of the next command line
// (SetReadDeadline) or when that read, already waiting, is woken by
// drain's deadline (Read). It writes to replyTo, the connection go-smtp
// writes its replies to: the TCP connection, or the TLS connection once
// its handshake is done. While that is not known (from the ClientHello of
// a STARTTLS or implicit-TLS handshake until the next EHLO, or on the
// implicit-TLS port until the handshake is complete) a connection at
// shutdown gets go-smtp's own 421.

// commandAwaited is called under c.mu as go-smtp arms the read of the next
// command line. It reports whether Shutdown is waiting for this connection
// and the shutdown reply can be said.
func (c *trackedConn) commandAwaited() bool {
	c.atBoundary = true
	if c.replyTo == nil && c.implicitTLS != nil && c.implicitTLS.ConnectionState().HandshakeComplete {
		// Safe here: go-smtp arms deadlines outside the handshake.
		c.replyTo = c.implicitTLS
	}
	return c.draining && !c.busy && c.replyTo != nil
}

// Read notes a timeout, which ends the connection (see trackedConn.ending),
// notes that a command has begun to arrive, and says the shutdown reply
// when drain woke a read waiting for one.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.ending.Read(err)
	if n == 0 && err == nil {
		return n, err
	}
	c.mu.Lock()
	if n > 0 {
		c.atBoundary = false
	}
	var ne net.Error
	say := err != nil && errors.As(err, &ne) && ne.Timeout() &&
		c.draining && !c.busy && c.atBoundary && c.replyTo != nil
	c.mu.Unlock()
	if say {
		return n, c.sayShuttingDown()
	}
	return n, err
}

// sayShuttingDown writes the shutdown reply and returns the error that
// ends the session. It is said once.
func (c *trackedConn) sayShuttingDown() error {
	c.mu.Lock()
	w := c.replyTo
	c.replyTo = nil
	c.mu.Unlock()
	if w != nil {
		c.Conn.SetWriteDeadline(time.Now().Add(refuseTimeout))
		io.WriteString(w, fmt.Sprintf("421 4.3.2 %s Service shutting down; try again later\r\n", c.srv.opts.Hostname))
	}
	return errShuttingDown
}

// repliesVia records the connection go-smtp writes its replies to (at
// each new session, that is after EHLO). A nil receiver is allowed.
func (c *trackedConn) repliesVia(w net.Conn) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.replyTo = w
	c.mu.Unlock()
}

// watchHandshakes returns a copy of cfg that tells each tracked connection
// when a TLS handshake starts on it, from then on its replies are
// encrypted by a tls.Conn it does not know yet.
func watchHandshakes(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	cfg = cfg.Clone()
	inner := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if tc := trackedOf(hello.Conn); tc != nil {
			tc.repliesVia(nil)
		}
		if inner != nil {
			return inner(hello)
		}
		return nil, nil
	}
	return cfg
}
