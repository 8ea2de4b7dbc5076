package protocol

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// The commands on mailboxes as a whole: SELECT, EXAMINE, CREATE, DELETE,
// RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS, NAMESPACE, CLOSE, UNSELECT,
// EXPUNGE.

func (c *Conn) handleSelect(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	name, err := c.mailbox()
	if err != nil {
		return err
	}
	var options imap.SelectOptions
	qresync, err := c.selectParams(&options)
	if err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	if options.CondStore {
		c.condStoreOn()
	}
	readOnly := cmd.name == "EXAMINE"
	if c.getState() == imap.ConnStateSelected {
		if err := c.session.Unselect(); err != nil {
			return err
		}
		c.setState(imap.ConnStateAuthenticated)
		// RFC 7162 3.2.11, RFC 9051 6.3.1: the previous mailbox is closed.
		if err := c.respond(func(e *wire.Encoder) {
			e.Status("", imap.StatusResponseTypeOK, "CLOSED", "Previous mailbox is now closed")
		}); err != nil {
			return err
		}
	}
	options.ReadOnly = readOnly
	data, err := c.session.Select(name, &options)
	if err != nil {
		return err
	}
	rev2 := c.EnabledCaps().Has(imap.CapIMAP4rev2)
	err = c.respond(func(e *wire.Encoder) {
		e.Star().Number(data.NumMessages).Raw(" EXISTS").CRLF()
		if !rev2 {
			e.Star().Number(data.NumRecent).Raw(" RECENT").CRLF()
			if data.FirstUnseenSeqNum != 0 {
				e.Status("", imap.StatusResponseTypeOK, fmt.Sprintf("UNSEEN %d", data.FirstUnseenSeqNum), "First unseen message")
			}
		}
		e.Status("", imap.StatusResponseTypeOK, fmt.Sprintf("UIDVALIDITY %d", data.UIDValidity), "UIDs valid")
		e.Status("", imap.StatusResponseTypeOK, fmt.Sprintf("UIDNEXT %d", data.UIDNext), "Predicted next UID")
		e.Star().Raw("FLAGS ").Flags(data.Flags).CRLF()
		e.Star().Raw("OK [PERMANENTFLAGS ").Flags(data.PermanentFlags).Raw("] Permanent flags").CRLF()
		if c.condStoreOffered() && data.HighestModSeq > 0 {
			// RFC 7162 3.1.2.1: with every SELECT and EXAMINE.
			e.Status("", imap.StatusResponseTypeOK, fmt.Sprintf("HIGHESTMODSEQ %d", data.HighestModSeq), "Highest")
		}
	})
	if err != nil {
		return err
	}
	if data.List != nil {
		if err := c.writeList(data.List, false); err != nil {
			return err
		}
	}
	c.setState(imap.ConnStateSelected)
	c.announceHighest = false // the SELECT responses said it
	if qresync != nil {
		if err := c.session.(SessionQResync).Resync(&FetchWriter{conn: c, batch: true}, qresync); err != nil {
			return err
		}
	}
	cmd.code = "READ-WRITE"
	if readOnly {
		cmd.code = "READ-ONLY"
	}
	return nil
}

func (c *Conn) handleCreate(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	name, err := c.mailbox()
	if err != nil {
		return err
	}
	var options imap.CreateOptions
	if end, err := d.AtEnd(); err != nil {
		return err
	} else if !end {
		// RFC 6154 3: CREATE name (USE (\Drafts ...)).
		if err := d.SP(); err != nil {
			return err
		}
		err := d.List(func() error {
			param, err := d.Atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(param, "USE") {
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown CREATE parameter " + clip(param)}
			}
			if err := d.SP(); err != nil {
				return err
			}
			return d.List(func() error {
				f, err := d.Flag(false)
				options.SpecialUse = append(options.SpecialUse, imap.MailboxAttr(f))
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	if err := d.End(); err != nil {
		return err
	}
	return c.session.Create(name, &options)
}

func (c *Conn) handleDelete(cmd *command) error {
	name, err := c.oneMailbox()
	if err != nil {
		return err
	}
	return c.session.Delete(name)
}

func (c *Conn) handleRename(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	from, err := c.mailbox()
	if err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	to, err := c.mailbox()
	if err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	return c.session.Rename(from, to, &imap.RenameOptions{})
}

func (c *Conn) handleSubscribe(cmd *command) error {
	name, err := c.oneMailbox()
	if err != nil {
		return err
	}
	if cmd.name == "UNSUBSCRIBE" {
		return c.session.Unsubscribe(name)
	}
	return c.session.Subscribe(name)
}

// oneMailbox reads " mailbox" and the end of the command.
func (c *Conn) oneMailbox() (string, error) {
	if err := c.dec.SP(); err != nil {
		return "", err
	}
	name, err := c.mailbox()
	if err != nil {
		return "", err
	}
	return name, c.dec.End()
}

func (c *Conn) handleStatus(cmd *command) error {
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
	var options imap.StatusOptions
	if err := c.statusItems(&options); err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	data, err := c.session.Status(name, &options)
	if err != nil {
		return err
	}
	return c.writeStatus(data, &options)
}

// statusItems reads "(MESSAGES UIDNEXT ...)".
func (c *Conn) statusItems(o *imap.StatusOptions) error {
	return c.dec.List(func() error {
		a, err := c.dec.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "MESSAGES":
			o.NumMessages = true
		case "UIDNEXT":
			o.UIDNext = true
		case "UIDVALIDITY":
			o.UIDValidity = true
		case "UNSEEN":
			o.NumUnseen = true
		case "DELETED":
			o.NumDeleted = true
		case "SIZE":
			o.Size = true
		case "APPENDLIMIT":
			o.AppendLimit = true
		case "DELETED-STORAGE":
			o.DeletedStorage = true
		case "RECENT":
			o.NumRecent = true
		case "HIGHESTMODSEQ":
			if !c.condStoreOffered() {
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown STATUS item " + clip(a)}
			}
			o.HighestModSeq = true
			c.condStoreOn()
		default:
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown STATUS item " + clip(a)}
		}
		return nil
	})
}

func (c *Conn) handleNamespace(cmd *command) error {
	if err := c.dec.End(); err != nil {
		return err
	}
	data, err := c.session.Namespace()
	if err != nil {
		return err
	}
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("NAMESPACE")
		for _, list := range [][]imap.NamespaceDescriptor{data.Personal, data.Other, data.Shared} {
			e.SP()
			if len(list) == 0 {
				e.NIL()
				continue
			}
			e.Byte('(')
			for _, ns := range list {
				e.Byte('(').Mailbox(ns.Prefix).SP()
				if ns.Delim == 0 {
					e.NIL()
				} else {
					e.String(string(ns.Delim))
				}
				e.Byte(')')
			}
			e.Byte(')')
		}
		e.CRLF()
	})
}

// handleUnselect serves UNSELECT and CLOSE, which first removes the
// \Deleted messages without telling (RFC 9051 6.4.1).
func (c *Conn) handleUnselect(cmd *command) error {
	if err := c.dec.End(); err != nil {
		return err
	}
	if cmd.name == "CLOSE" {
		if err := c.session.Expunge(&ExpungeWriter{}, nil); err != nil {
			return err
		}
	}
	if err := c.session.Unselect(); err != nil {
		return err
	}
	c.setState(imap.ConnStateAuthenticated)
	return nil
}

func (c *Conn) handleExpunge(cmd *command) error {
	d := c.dec
	var uids *imap.UIDSet
	if cmd.kind == NumKindUID {
		if err := d.SP(); err != nil {
			return err
		}
		set, err := d.UIDSet()
		if err != nil {
			return err
		}
		uids = &set
	}
	if err := d.End(); err != nil {
		return err
	}
	if err := c.session.Expunge(&ExpungeWriter{conn: c}, uids); err != nil {
		return err
	}
	return c.expungeModSeq(cmd)
}
