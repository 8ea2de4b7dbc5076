package protocol

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// APPEND (RFC 9051 6.3.12), with APPENDUID (RFC 4315), literal8 under
// BINARY (RFC 3516), MULTIAPPEND (RFC 3502): several messages in one
// command, stored all or none, and the UTF8 data item of UTF8=ACCEPT
// (RFC 6855 4): `UTF8 (~{n}…)`, a message whose header may carry UTF-8,
// valid only once the client has enabled UTF8=ACCEPT.

// SessionMultiAppend is implemented by a Session that offers MULTIAPPEND
// (advertised when Options.Caps holds it). Every APPEND then goes through
// it: ReadAppend takes each message as its literal arrives and checks it,
// storing nothing; AppendMany stores them all in one transaction, or none.
type SessionMultiAppend interface {
	// ReadAppend reads and checks one message; the value it returns is
	// only ever passed back to AppendMany, with its size in bytes.
	ReadAppend(r imap.LiteralReader, options *imap.AppendOptions) (msg any, size int64, err error)
	// AppendMany stores msgs in mailbox, every one or none, and returns
	// their UIDs in the order given.
	AppendMany(mailbox string, msgs []any) (*MultiAppendData, error)
}

// MultiAppendData says where the messages of an APPEND went.
type MultiAppendData struct {
	UIDValidity uint32
	UIDs        []imap.UID // in the order of the messages
}

// multiAppendTotal bounds the bytes of all messages of one MULTIAPPEND,
// as a multiple of the APPEND limit of one message: they are held in
// memory until the last one has arrived.
const multiAppendTotal = 2

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
	multi, ok := c.session.(SessionMultiAppend)
	if !ok || !c.srv.opts.Caps.Has(imap.CapMultiAppend) {
		return c.appendOne(cmd, name)
	}
	limit := int64(c.session.AppendLimit())
	budget := multiAppendTotal * limit
	var msgs []any
	for {
		options, utf8, err := c.appendHeader()
		if err != nil {
			return err
		}
		lit, err := c.appendLiteral(min(limit, budget), utf8)
		if err != nil {
			return err
		}
		msg, size, err := multi.ReadAppend(lit, &options)
		if err != nil {
			return err
		}
		if err := c.appendUTF8End(utf8); err != nil {
			return err
		}
		msgs = append(msgs, msg)
		budget -= size
		b, err := d.Peek()
		if err != nil {
			return err
		}
		if b != ' ' {
			break
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	// Nothing is stored before the command has been read to its end: a
	// syntax error after the last literal stores nothing either.
	if err := d.End(); err != nil {
		return err
	}
	data, err := multi.AppendMany(name, msgs)
	if err != nil {
		return err
	}
	if data != nil && data.UIDValidity != 0 && len(data.UIDs) == len(msgs) {
		cmd.code = fmt.Sprintf("APPENDUID %d %s", data.UIDValidity, uidList(data.UIDs))
	}
	return nil
}

// appendHeader reads the optional flag list and date-time before a
// message's literal, and the opening `UTF8 (` of RFC 6855's data item
// (utf8 is then set, and appendUTF8End reads its `)`).
func (c *Conn) appendHeader() (options imap.AppendOptions, utf8 bool, err error) {
	d := c.dec
	b, err := d.Peek()
	if err != nil {
		return options, false, err
	}
	if b == '(' {
		if options.Flags, err = d.FlagList(); err != nil {
			return options, false, err
		}
		if err := d.SP(); err != nil {
			return options, false, err
		}
		if b, err = d.Peek(); err != nil {
			return options, false, err
		}
	}
	if b == '"' {
		if options.Time, err = d.DateTime(); err != nil {
			return options, false, err
		}
		if err := d.SP(); err != nil {
			return options, false, err
		}
		if b, err = d.Peek(); err != nil {
			return options, false, err
		}
	}
	if b == 'U' || b == 'u' {
		atom, err := d.Atom()
		if err != nil {
			return options, false, err
		}
		if !strings.EqualFold(atom, "UTF8") {
			return options, false, appendBad(fmt.Sprintf("Expected a literal or UTF8 (literal8), not %q", clip(atom)))
		}
		if !c.enabled.Has(imap.CapUTF8Accept) {
			// RFC 6855 4: BAD unless the client enabled UTF8=ACCEPT.
			return options, false, appendBad("APPEND UTF8 needs ENABLE UTF8=ACCEPT first")
		}
		if err := d.SP(); err != nil {
			return options, false, err
		}
		if err := d.Expect('(', "( after UTF8"); err != nil {
			return options, false, err
		}
		return options, true, nil
	}
	return options, false, nil
}

// appendUTF8End reads the `)` that closes a UTF8 data item.
func (c *Conn) appendUTF8End(utf8 bool) error {
	if !utf8 {
		return nil
	}
	return c.dec.Expect(')', ") closing UTF8 (")
}

func appendBad(text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: text}
}

// appendLiteral opens a message's literal of at most max bytes. One over
// it is refused before a byte of it is read (NO [TOOBIG]; see
// wire.Decoder.Literal), and the rest of the command is skipped, never run.
// Inside a UTF8 data item it must be a literal8 (RFC 6855 4's grammar:
// "UTF8" SP "(" literal8 ")"), taken whether or not BINARY is offered; a
// plain literal there is BAD, refused before its bytes are read.
func (c *Conn) appendLiteral(max int64, utf8 bool) (imap.LiteralReader, error) {
	c.setReadTimeout(literalReadTimeout)
	if utf8 {
		b, err := c.dec.Peek()
		if err != nil {
			return nil, err
		}
		if b != '~' {
			return nil, appendBad("APPEND UTF8 ( takes a literal8 (~{n}), not a literal")
		}
	}
	return c.dec.Literal(max, utf8 || c.srv.opts.Caps.Has(imap.CapBinary) || c.srv.opts.Caps.Has(imap.CapIMAP4rev2))
}

// appendOne is APPEND of one message, streamed to Session.Append.
func (c *Conn) appendOne(cmd *command, name string) error {
	d := c.dec
	options, utf8, err := c.appendHeader()
	if err != nil {
		return err
	}
	lit, err := c.appendLiteral(int64(c.session.AppendLimit()), utf8)
	if err != nil {
		return err
	}
	data, err := c.session.Append(name, lit, &options)
	if err != nil {
		return err
	}
	if err := c.appendUTF8End(utf8); err != nil {
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

// uidList writes UIDs in their order as a uid-set (RFC 4315), runs of
// consecutive ones as a range: "4:6" or "4:5,2".
func uidList(uids []imap.UID) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d:%d", uids[i], uids[j])
		} else {
			fmt.Fprintf(&b, "%d", uids[i])
		}
		i = j + 1
	}
	return b.String()
}
