package protocol

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// The commands valid in every state: CAPABILITY, NOOP, LOGOUT, ID.

// capabilities lists what is advertised now, in the order go-imap did (so
// clients see no change): only what Options.Caps holds, the
// authentication ones by state.
func (c *Conn) capabilities() []string {
	caps := c.srv.opts.Caps
	var out []string
	add := func(list ...imap.Cap) {
		for _, cp := range list {
			if caps.Has(cp) {
				out = append(out, string(cp))
			}
		}
	}
	st := c.getState()
	authed := st == imap.ConnStateAuthenticated || st == imap.ConnStateSelected
	add(imap.CapIMAP4rev2, imap.CapIMAP4rev1, imap.CapSASLIR)
	if !authed || !caps.Has(imap.CapLiteralPlus) {
		// RFC 7888 4: LITERAL- or LITERAL+, never both; LITERAL+ is
		// on offer only after login.
		add(imap.CapLiteralMinus)
	}
	add(imap.CapID)
	if c.canStartTLS() {
		out = append(out, string(imap.CapStartTLS))
	}
	if c.canAuth() {
		out = append(out, "AUTH=PLAIN")
	} else if st == imap.ConnStateNotAuthenticated {
		out = append(out, string(imap.CapLoginDisabled))
	}
	if authed {
		add(imap.CapUnselect, imap.CapEnable, imap.CapIdle, imap.CapUTF8Accept,
			imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch, imap.CapSearchRes,
			imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapStatusSize,
			imap.CapBinary, imap.CapChildren, imap.CapSpecialUse, imap.CapLiteralPlus)
		add(imap.CapCondStore)
		if c.qresyncOffered() {
			add(imap.CapQResync)
		}
		add(imap.CapSort, imap.CapSortDisplay, imap.CapESort, "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES")
		out = append(out, fmt.Sprintf("APPENDLIMIT=%d", c.session.AppendLimit()))
		add(imap.CapMultiAppend, imap.CapQuota, CapQuotaResStorage)
		if !c.isCompressed() {
			add(CapCompressDeflate)
		}
	}
	return out
}

// capabilityCode is the CAPABILITY response code of the greeting and of a
// successful login (RFC 9051 7.1).
func (c *Conn) capabilityCode() string {
	return "CAPABILITY " + strings.Join(c.capabilities(), " ")
}

func (c *Conn) handleCapability(cmd *command) error {
	if err := c.dec.End(); err != nil {
		return err
	}
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("CAPABILITY")
		for _, cp := range c.capabilities() {
			e.SP().Raw(cp)
		}
		e.CRLF()
	})
}

func (c *Conn) handleNoop(cmd *command) error { return c.dec.End() }

func (c *Conn) handleLogout(cmd *command) error {
	if err := c.dec.End(); err != nil {
		return err
	}
	c.setState(imap.ConnStateLogout)
	return c.respond(func(e *wire.Encoder) { e.Status("", imap.StatusResponseTypeBye, "", "Logging out") })
}

// RFC 2971 3.3: the bounds of an ID request.
const (
	maxIDFields     = 30
	maxIDFieldName  = 30
	maxIDFieldValue = 1024
)

// handleID answers ID (RFC 2971), also before login. What the client says
// about itself is only checked against the RFC's bounds.
func (c *Conn) handleID(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	b, err := d.Peek()
	if err != nil {
		return err
	}
	if b == '(' {
		n := 0
		err := d.List(func() error {
			if n++; n > maxIDFields {
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: fmt.Sprintf("ID takes at most %d fields", maxIDFields)}
			}
			name, err := d.String()
			if err != nil {
				return err
			}
			if err := d.SP(); err != nil {
				return err
			}
			value, _, err := d.NString()
			if err != nil {
				return err
			}
			if len(name) > maxIDFieldName || len(value) > maxIDFieldValue {
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "ID field name or value too long (RFC 2971 3.3)"}
			}
			return nil
		})
		if err != nil {
			return err
		}
	} else if _, ok, err := d.NString(); err != nil || ok {
		if err == nil {
			err = &imap.Error{Type: imap.StatusResponseTypeBad, Text: "ID takes a list of fields or NIL"}
		}
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	return c.respond(func(e *wire.Encoder) { e.Star().Raw(`ID ("name" "pochta")`).CRLF() })
}
