package protocol

import (
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// IDLE (RFC 2177).

func (c *Conn) handleIdle(cmd *command) error {
	if err := c.dec.End(); err != nil {
		return err
	}
	if err := c.respond(func(e *wire.Encoder) { e.Continuation("idling") }); err != nil {
		return err
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.session.Idle(&UpdateWriter{conn: c, allowExpunge: true}, stop)
	}()
	c.setReadTimeout(waitReadTimeout)
	c.setIdling(true)
	line, rerr := c.dec.ReadLine()
	c.setIdling(false)
	close(stop)
	ierr := <-done
	if rerr != nil {
		return rerr
	}
	if ierr != nil {
		return ierr
	}
	if !strings.EqualFold(line, "DONE") {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Expected DONE to end IDLE"}
	}
	return nil
}
