package imapd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// CloseGrace bounds how long Close lets the commands in flight finish; a
// caller with its own bound uses Shutdown.
const CloseGrace = 30 * time.Second

// byeText is what every client is told when the server stops.
const byeText = "pochta is shutting down"

// Close is Shutdown bounded by CloseGrace.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), CloseGrace)
	defer cancel()
	return s.Shutdown(ctx)
}

// Shutdown stops the listeners and ends every connection with an untagged
// BYE (RFC 3501 7.1.5) at a command boundary: a connection waiting for its
// next command, in IDLE, or not logged in gets BYE at once; one with a
// command in flight (an APPEND whose literal is still arriving, a FETCH
// being written) gets its tagged response first and BYE right after it
// (protocol.Conn.Bye waits for the command being served). Storage calls
// are cancelled only once every connection has had its BYE. When ctx ends
// first, the remaining connections are closed without BYE and ctx's error
// is returned. Shutdown returns once every connection is closed; calling
// it again returns nil.
func (s *Server) Shutdown(ctx context.Context) error {
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
	s.mu.Unlock()

	var pending sync.WaitGroup
	for _, sess := range sessions {
		pending.Go(func() { _ = sess.conn.Bye(byeText) })
	}
	drained := make(chan struct{})
	go func() {
		pending.Wait()
		close(drained)
	}()
	var late error
	select {
	case <-drained:
	case <-ctx.Done():
		late = fmt.Errorf("imapd: shutdown: commands still in flight: %w", ctx.Err())
		s.log.Warn("commands still in flight when the shutdown time ran out; closing their connections")
	}
	s.cancel()
	// What is left: connections whose session did not exist yet (their
	// greeting was not written) and those that did not finish in time.
	s.mu.Lock()
	conns := make([]*guardedConn, 0, len(s.open))
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		// Closing the socket ends the connection's goroutine, which then
		// closes its side (and the slot) through guardedConn.Close.
		c.Conn.Close()
	}
	if err := errors.Join(append(errs, late)...); err != nil {
		return fmt.Errorf("imapd: close: %w", err)
	}
	return nil
}
