package protocol

import (
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// IDLE (RFC 2177).

func (c *Conn) handleIdle(cmd *command) error {
	if err := c.dec.End(); err != nil {
		return err
	}
	// Idling from before the continuation on: a Bye that comes once the
	// client has seen "+" must go at once, not wait for a DONE that may
	// never come (it waited, when this was set after the "+").
	c.setIdling(true)
	if err := c.respond(func(e *wire.Encoder) { e.Continuation("idling") }); err != nil {
		c.setIdling(false)
		return err
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.session.Idle(&UpdateWriter{conn: c, allowExpunge: true}, stop)
	}()
	c.setReadTimeout(waitReadTimeout)
	c.dec.Begin()
	_, rerr := c.dec.Peek()
	isDone := false
	if rerr == nil {
		// The client spoke: the rest of its line has the bound of a
		// command line, not of the wait.
		c.setReadTimeout(cmdReadTimeout)
		isDone, rerr = c.readDone()
	}
	c.setIdling(false)
	close(stop)
	ierr := <-done
	if rerr != nil {
		return rerr
	}
	if ierr != nil {
		return ierr
	}
	if !isDone {
		// Answered at once, before the rest of the line arrives; that is
		// then skipped within the bound of a command line.
		cmd.responded = true
		if err := c.respond(func(e *wire.Encoder) {
			e.Status(cmd.tag, imap.StatusResponseTypeBad, "", "Expected DONE to end IDLE")
		}); err != nil {
			return err
		}
		if err := c.dec.SkipCommand(); err != nil {
			if werr := wire.AsError(err); werr != nil {
				c.respond(func(e *wire.Encoder) { e.Status("", imap.StatusResponseTypeBye, "", werr.Text) })
				return fmt.Errorf("%w: %v", errByeSent, err)
			}
			return err
		}
	}
	return nil
}

// readDone reads IDLE's DONE line (any case, RFC 2177) and reports
// whether it was one. It stops at the first byte that cannot belong to
// DONE, so a client trickling anything else ends its IDLE at once
// rather than at the wait's bound; the rest of that line is then skipped
// as a bad command's.
func (c *Conn) readDone() (bool, error) {
	for i := range len("DONE") {
		b, err := c.dec.Peek()
		if err != nil {
			return false, err
		}
		if b|0x20 != "done"[i] {
			return false, nil
		}
		if _, err := c.dec.Accept(b); err != nil {
			return false, err
		}
	}
	if end, err := c.dec.AtEnd(); err != nil || !end {
		return false, err
	}
	return true, c.dec.End()
}
