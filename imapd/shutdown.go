package imapd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
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
// being written) gets its tagged response first and BYE right after it.
// Storage calls are cancelled only once every connection has had its BYE.
// When ctx ends first, the remaining connections are closed without BYE
// and ctx's error is returned. Shutdown returns once every connection is
// closed; calling it again returns nil.
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
	conns := make([]*guardedConn, 0, len(s.open))
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	var pending sync.WaitGroup
	for _, c := range conns {
		pending.Add(1)
		c.drain.shutdown(pending.Done, c.Conn.Close)
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
	s.mu.Lock()
	conns = conns[:0]
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		// Closing the socket ends go-imap's goroutine for it, which then
		// closes its side (and the slot) through guardedConn.Close.
		c.Conn.Close()
	}
	if err := errors.Join(append(errs, late)...); err != nil {
		return fmt.Errorf("imapd: close: %w", err)
	}
	return nil
}

// drainState is one connection's part in Shutdown. It learns where the
// connection is from the read deadlines go-imap arms (see guardedConn):
// go-imap arms a long wait (35 min) for a logged-in client's next command
// and for DONE in IDLE, and shorter deadlines to read a command or a
// literal; the long wait is armed only after the tagged response to the
// previous command has been written. So a connection whose last deadline
// is a wait is at a command boundary, and BYE said there loses nothing.
//
// BYE is said either by Shutdown (the connection is at a boundary, or not
// logged in, when Shutdown comes) or by the connection's own goroutine as
// it arms its next wait (a command was in flight). Both decide under mu, so
// exactly one of them says it.
type drainState struct {
	mu       sync.Mutex
	conn     *imapserver.Conn // the session's connection; nil before it has one
	between  bool             // the last deadline armed is a wait for a command or DONE
	loggedIn bool             // a wait has been armed once, which go-imap does only after login
	closing  bool             // Shutdown asked for BYE
	gone     bool             // the connection is closed
	done     func()           // Shutdown's; called once, when the connection is done with
}

// drainState returns c's drain state; nil for a nil c, whose methods do
// nothing.
func (c *guardedConn) drainState() *drainState {
	if c == nil {
		return nil
	}
	return &c.drain
}

// attach records the session's connection, through which BYE is said.
func (d *drainState) attach(conn *imapserver.Conn) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.conn = conn
	d.mu.Unlock()
}

// armed is called with each read deadline go-imap arms, on the
// connection's goroutine. It says BYE (and reports true) when Shutdown is
// waiting for this connection and the deadline is the wait at a command
// boundary.
func (d *drainState) armed(t time.Time) bool {
	wait := !t.IsZero() && time.Until(t) > waitThreshold
	d.mu.Lock()
	d.between = wait
	d.loggedIn = d.loggedIn || wait
	conn := d.conn
	bye := wait && d.closing && !d.gone && conn != nil
	if bye {
		d.gone = true // nobody else says BYE to it
	}
	d.mu.Unlock()
	if bye {
		d.sayBye(conn)
	}
	return bye
}

// shutdown marks the connection as closing. done is called once the
// connection has had its BYE or has closed; closeNow closes a connection
// that has no session yet (its greeting has not been written).
func (d *drainState) shutdown(done func(), closeNow func() error) {
	d.mu.Lock()
	if d.gone {
		d.mu.Unlock()
		done()
		return
	}
	d.closing = true
	d.done = done
	conn := d.conn
	now := conn == nil || !d.loggedIn || d.between
	if now {
		d.gone = true
	}
	d.mu.Unlock()
	switch {
	case conn == nil:
		closeNow()
		d.finish()
	case now:
		// BYE waits for go-imap's response lock, so a response being
		// written (an IDLE update, say) is not cut; it runs on its own
		// goroutine so that one slow client does not hold up the others.
		go d.sayBye(conn)
	}
}

// sayBye writes the untagged BYE and closes the connection.
func (d *drainState) sayBye(conn *imapserver.Conn) {
	_ = conn.Bye(byeText)
	d.finish()
}

// closed is called when the connection closes, for whatever reason.
func (d *drainState) closed() {
	d.mu.Lock()
	d.gone = true
	d.mu.Unlock()
	d.finish()
}

// finish calls Shutdown's done, once.
func (d *drainState) finish() {
	d.mu.Lock()
	done := d.done
	d.done = nil
	d.mu.Unlock()
	if done != nil {
		done()
	}
}
