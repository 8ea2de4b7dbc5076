package protocol

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
)

// APPEND (RFC 9051 6.3.12), with APPENDUID (RFC 4315) and literal8 under
// BINARY (RFC 3516).

func (c *Conn) handleAppend(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	name, err := c.mailbox()
	if err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	var options imap.AppendOptions
	b, err := d.Peek()
	if err != nil {
		return err
	}
	if b == '(' {
		if options.Flags, err = d.FlagList(); err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
		if b, err = d.Peek(); err != nil {
			return err
		}
	}
	if b == '"' {
		if options.Time, err = d.DateTime(); err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	// The literal is refused before a byte of it is read if it is over
	// the limit (NO [TOOBIG]); see wire.Decoder.Literal.
	c.setReadTimeout(literalReadTimeout)
	lit, err := d.Literal(int64(c.session.AppendLimit()), c.srv.opts.Caps.Has(imap.CapBinary) || c.srv.opts.Caps.Has(imap.CapIMAP4rev2))
	if err != nil {
		return err
	}
	data, err := c.session.Append(name, lit, &options)
	if err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	if data != nil && data.UID != 0 && data.UIDValidity != 0 {
		cmd.code = fmt.Sprintf("APPENDUID %d %d", data.UIDValidity, data.UID)
	}
	return nil
}
