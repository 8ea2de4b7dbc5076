package protocol

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// STORE and UID STORE (RFC 9051 6.4.6).

func (c *Conn) handleStore(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	set, err := c.numSet(cmd.kind)
	if err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	w := &FetchWriter{conn: c, batch: true}
	if err := c.storeModifiers(w); err != nil {
		return err
	}
	item, err := d.Atom()
	if err != nil {
		return err
	}
	var flags imap.StoreFlags
	item = strings.ToUpper(item)
	switch {
	case strings.HasPrefix(item, "+"):
		flags.Op, item = imap.StoreFlagsAdd, item[1:]
	case strings.HasPrefix(item, "-"):
		flags.Op, item = imap.StoreFlagsDel, item[1:]
	default:
		flags.Op = imap.StoreFlagsSet
	}
	switch item {
	case "FLAGS":
	case "FLAGS.SILENT":
		flags.Silent = true
	default:
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Expected FLAGS, +FLAGS or -FLAGS (with .SILENT)"}
	}
	if err := d.SP(); err != nil {
		return err
	}
	b, err := d.Peek()
	if err != nil {
		return err
	}
	if b == '(' {
		if flags.Flags, err = d.FlagList(); err != nil {
			return err
		}
	} else {
		// RFC 9051 9: flag *(SP flag) without parentheses.
		for {
			f, err := d.Flag(false)
			if err != nil {
				return err
			}
			flags.Flags = append(flags.Flags, f)
			if end, err := d.AtEnd(); err != nil {
				return err
			} else if end {
				break
			}
			if err := d.SP(); err != nil {
				return err
			}
		}
	}
	if err := d.End(); err != nil {
		return err
	}
	if flags.Flags == nil {
		flags.Flags = []imap.Flag{}
	}
	if w.conditional {
		c.condStoreOn()
	}
	if err := c.session.Store(w, set, &flags, &imap.StoreOptions{UnchangedSince: w.unchangedSince}); err != nil {
		return err
	}
	if w.modified != nil && !emptySet(w.modified) {
		// RFC 7162 3.1.3: the messages that failed UNCHANGEDSINCE.
		cmd.code = "MODIFIED " + w.modified.String()
		cmd.text = "Conditional STORE failed"
	}
	return nil
}
