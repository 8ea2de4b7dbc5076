package protocol

import (
	"github.com/emersion/go-imap/v2"
)

// COPY, MOVE and their UID forms (RFC 9051 6.4.7, 6.4.8; COPYUID RFC 4315).

func (c *Conn) copyArgs(cmd *command) (imap.NumSet, string, error) {
	d := c.dec
	if err := d.SP(); err != nil {
		return nil, "", err
	}
	set, err := c.numSet(cmd.kind)
	if err != nil {
		return nil, "", err
	}
	if err := d.SP(); err != nil {
		return nil, "", err
	}
	dest, err := c.mailbox()
	if err != nil {
		return nil, "", err
	}
	return set, dest, d.End()
}

func (c *Conn) handleCopy(cmd *command) error {
	set, dest, err := c.copyArgs(cmd)
	if err != nil {
		return err
	}
	data, err := c.session.Copy(set, dest)
	if err != nil {
		return err
	}
	cmd.code = copyUIDCode(data)
	return nil
}

func (c *Conn) handleMove(cmd *command) error {
	set, dest, err := c.copyArgs(cmd)
	if err != nil {
		return err
	}
	return c.session.Move(&MoveWriter{conn: c}, set, dest)
}
