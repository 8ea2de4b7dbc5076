package protocol

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// CONDSTORE and QRESYNC (RFC 7162): the parameters and modifiers they add
// to SELECT, FETCH, STORE and SEARCH, and their responses. The commands
// themselves stay in their families' files; what is here is called from
// there.

// QResyncParams are the parameters of SELECT mailbox (QRESYNC (...))
// (RFC 7162 3.2.5).
type QResyncParams struct {
	UIDValidity uint32
	ModSeq      uint64
	// KnownUIDs is the client's UID set; nil means all (1:*).
	KnownUIDs imap.UIDSet
	// SeqMatch (known sequence numbers and their UIDs) may be ignored:
	// it only narrows what a server without complete tombstones reports.
	SeqMatchSeqs imap.SeqSet
	SeqMatchUIDs imap.UIDSet
}

// SessionQResync is a Session that resynchronises a QRESYNC client: after
// a successful SELECT with the QRESYNC parameter, Resync writes VANISHED
// (EARLIER) for the known UIDs expunged since params.ModSeq and a FETCH
// (UID, FLAGS, MODSEQ) for every message changed since, before the tagged
// OK. A Session without it gets no QRESYNC advertised.
type SessionQResync interface {
	Resync(w *FetchWriter, params *QResyncParams) error
}

// condStoreOn turns CONDSTORE on for the connection (an enabling command,
// RFC 7162 3.1), if it is advertised.
func (c *Conn) condStoreOn() {
	if !c.srv.opts.Caps.Has(imap.CapCondStore) {
		return
	}
	c.mu.Lock()
	_, was := c.enabled[imap.CapCondStore]
	c.enabled[imap.CapCondStore] = struct{}{}
	selected := c.state == imap.ConnStateSelected
	c.mu.Unlock()
	if !was && selected {
		// RFC 7162 3.1: the first enabling command in the selected
		// state gets an OK [HIGHESTMODSEQ] before its tagged OK.
		c.announceHighest = true
	}
}

// SessionCondStore is a Session that can say the selected mailbox's
// HIGHESTMODSEQ at any time, for a client that enables CONDSTORE while a
// mailbox is selected.
type SessionCondStore interface {
	HighestModSeq() (uint64, error)
}

// expungeModSeq puts the mailbox's HIGHESTMODSEQ, which the expunge
// raised, in EXPUNGE's tagged OK for a CONDSTORE client (RFC 7162 3.2.7).
func (c *Conn) expungeModSeq(cmd *command) error {
	s, ok := c.session.(SessionCondStore)
	if !ok || !c.CondStoreEnabled() {
		return nil
	}
	n, err := s.HighestModSeq()
	if err != nil || n == 0 {
		return err
	}
	cmd.code = fmt.Sprintf("HIGHESTMODSEQ %d", n)
	return nil
}

// announceHighestModSeq writes the HIGHESTMODSEQ owed (see condStoreOn).
func (c *Conn) announceHighestModSeq() error {
	if !c.announceHighest {
		return nil
	}
	c.announceHighest = false
	s, ok := c.session.(SessionCondStore)
	if !ok || c.getState() != imap.ConnStateSelected {
		return nil
	}
	n, err := s.HighestModSeq()
	if err != nil || n == 0 {
		return err
	}
	return c.respond(func(e *wire.Encoder) {
		e.Status("", imap.StatusResponseTypeOK, fmt.Sprintf("HIGHESTMODSEQ %d", n), "Highest")
	})
}

// qresyncOffered reports whether QRESYNC is advertised and served.
func (c *Conn) qresyncOffered() bool { return c.qresyncOfferedLocked() }

// qresyncOfferedLocked is qresyncOffered for a caller holding c.mu (it
// takes no lock).
func (c *Conn) qresyncOfferedLocked() bool {
	if !c.srv.opts.Caps.Has(imap.CapQResync) || !c.srv.opts.Caps.Has(imap.CapCondStore) {
		return false
	}
	_, ok := c.session.(SessionQResync)
	return ok
}

// condStoreOffered reports whether CONDSTORE is advertised.
func (c *Conn) condStoreOffered() bool { return c.srv.opts.Caps.Has(imap.CapCondStore) }

func badCondStore(text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: text}
}

// selectParams reads " (CONDSTORE)" or " (QRESYNC (...))" after the
// mailbox name of SELECT and EXAMINE, if present.
func (c *Conn) selectParams(o *imap.SelectOptions) (*QResyncParams, error) {
	d := c.dec
	if end, err := d.AtEnd(); err != nil || end {
		return nil, err
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	var qr *QResyncParams
	err := d.List(func() error {
		name, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(name) {
		case "CONDSTORE":
			if !c.condStoreOffered() {
				return badCondStore("CONDSTORE is not supported")
			}
			o.CondStore = true
			return nil
		case "QRESYNC":
			if !c.qresyncOffered() {
				return badCondStore("QRESYNC is not supported")
			}
			if !c.EnabledCaps().Has(imap.CapQResync) {
				// RFC 7162 3.2.5: BAD unless ENABLE QRESYNC came first.
				return badCondStore("ENABLE QRESYNC first")
			}
			if err := d.SP(); err != nil {
				return err
			}
			qr = &QResyncParams{}
			return c.qresyncParams(qr)
		}
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown SELECT parameter " + clip(name)}
	})
	return qr, err
}

// qresyncParams reads "(uidvalidity modseq [known-uids [(seqs uids)]])".
func (c *Conn) qresyncParams(qr *QResyncParams) error {
	d := c.dec
	if err := d.Expect('(', "( before the QRESYNC parameters"); err != nil {
		return err
	}
	v, err := d.NZNumber()
	if err != nil {
		return err
	}
	qr.UIDValidity = v
	if err := d.SP(); err != nil {
		return err
	}
	ms, err := d.Number64()
	if err != nil {
		return err
	}
	qr.ModSeq = uint64(ms)
	if qr.ModSeq == 0 {
		return badCondStore("The QRESYNC mod-sequence must be positive")
	}
	if ok, err := d.Accept(' '); err != nil {
		return err
	} else if ok {
		if b, err := d.Peek(); err != nil {
			return err
		} else if b != '(' {
			if qr.KnownUIDs, err = c.plainUIDSet(); err != nil {
				return err
			}
			if ok, err = d.Accept(' '); err != nil {
				return err
			}
		}
		if ok {
			if err := d.Expect('(', "( before the sequence match data"); err != nil {
				return err
			}
			seqs, err := d.SeqSet()
			if err != nil {
				return err
			}
			if err := d.SP(); err != nil {
				return err
			}
			uids, err := c.plainUIDSet()
			if err != nil {
				return err
			}
			if err := d.Expect(')', ") after the sequence match data"); err != nil {
				return err
			}
			qr.SeqMatchSeqs, _ = seqs.(imap.SeqSet)
			qr.SeqMatchUIDs = uids
		}
	}
	return d.Expect(')', ") after the QRESYNC parameters")
}

// plainUIDSet reads a UID set that may not be "$".
func (c *Conn) plainUIDSet() (imap.UIDSet, error) {
	uids, err := c.dec.UIDSet()
	if err != nil {
		return nil, err
	}
	if imap.IsSearchRes(uids) {
		return nil, badCondStore("Expected a UID set")
	}
	return uids, nil
}

// fetchModifiers reads " (CHANGEDSINCE n [VANISHED])" after FETCH's items.
func (c *Conn) fetchModifiers(cmd *command, o *imap.FetchOptions, w *FetchWriter) error {
	d := c.dec
	if end, err := d.AtEnd(); err != nil || end {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	err := d.List(func() error {
		name, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(name) {
		case "CHANGEDSINCE":
			if !c.condStoreOffered() {
				return badCondStore("CONDSTORE is not supported")
			}
			if err := d.SP(); err != nil {
				return err
			}
			n, err := d.Number64()
			if err != nil {
				return err
			}
			if n == 0 {
				return badCondStore("CHANGEDSINCE must be positive")
			}
			o.ChangedSince, o.ModSeq = uint64(n), true
			return nil
		case "VANISHED":
			w.vanished = true
			return nil
		}
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown FETCH modifier " + clip(name)}
	})
	if err != nil {
		return err
	}
	if w.vanished {
		// RFC 7162 3.2.6: only UID FETCH, only with CHANGEDSINCE, only
		// once QRESYNC is enabled.
		switch {
		case !c.EnabledCaps().Has(imap.CapQResync):
			return badCondStore("VANISHED needs ENABLE QRESYNC")
		case cmd.kind != NumKindUID:
			return badCondStore("VANISHED is only valid with UID FETCH")
		case o.ChangedSince == 0:
			return badCondStore("VANISHED needs CHANGEDSINCE")
		}
	}
	return nil
}

// storeModifiers reads "(UNCHANGEDSINCE n) " before STORE's item, if
// present.
func (c *Conn) storeModifiers(w *FetchWriter) error {
	d := c.dec
	if b, err := d.Peek(); err != nil || b != '(' {
		return err
	}
	err := d.List(func() error {
		name, err := d.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(name, "UNCHANGEDSINCE") {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown STORE modifier " + clip(name)}
		}
		if !c.condStoreOffered() {
			return badCondStore("CONDSTORE is not supported")
		}
		if err := d.SP(); err != nil {
			return err
		}
		n, err := d.Number64()
		if err != nil {
			return err
		}
		w.unchangedSince, w.conditional = uint64(n), true
		return nil
	})
	if err != nil {
		return err
	}
	return d.SP()
}

// searchModSeq reads the rest of "MODSEQ [entry-name entry-type] n".
func (c *Conn) searchModSeq(cr *imap.SearchCriteria) error {
	d := c.dec
	if !c.condStoreOffered() {
		return searchError("CONDSTORE is not supported")
	}
	if err := d.SP(); err != nil {
		return err
	}
	m := &imap.SearchCriteriaModSeq{}
	b, err := d.Peek()
	if err != nil {
		return err
	}
	if b == '"' {
		if m.MetadataName, err = d.AString(); err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
		typ, err := d.Atom()
		if err != nil {
			return err
		}
		switch t := strings.ToLower(typ); t {
		case "priv", "shared", "all":
			m.MetadataType = imap.SearchCriteriaMetadataType(t)
		default:
			return searchError("Unknown MODSEQ entry type " + clip(typ))
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	n, err := d.Number64()
	if err != nil {
		return err
	}
	m.ModSeq = uint64(n)
	c.condStoreOn()
	if cr.ModSeq == nil || cr.ModSeq.ModSeq < m.ModSeq {
		cr.ModSeq = m
	}
	return nil
}

// WriteModSeq writes MODSEQ (n).
func (w *FetchResponseWriter) WriteModSeq(modseq uint64) {
	w.item("MODSEQ (").Number64(int64(modseq)).Byte(')')
}

// Vanished reports whether UID FETCH asked for VANISHED (RFC 7162 3.2.6).
func (w *FetchWriter) Vanished() bool { return w.vanished }

// UnchangedSince returns STORE's UNCHANGEDSINCE, if given.
func (w *FetchWriter) UnchangedSince() (uint64, bool) { return w.unchangedSince, w.conditional }

// SetModified records the messages a conditional STORE left alone, for
// the MODIFIED response code (sequence numbers for STORE, UIDs for UID
// STORE).
func (w *FetchWriter) SetModified(set imap.NumSet) { w.modified = set }

// WriteVanished writes "* VANISHED (EARLIER) uids" or "* VANISHED uids".
func (w *FetchWriter) WriteVanished(uids imap.UIDSet, earlier bool) error {
	if len(uids) == 0 {
		return nil
	}
	return w.conn.writeVanished(uids, earlier)
}

func (c *Conn) writeVanished(uids imap.UIDSet, earlier bool) error {
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("VANISHED ")
		if earlier {
			e.Raw("(EARLIER) ")
		}
		e.NumSet(uids).CRLF()
	})
}

// qresyncEnabled reports whether expunges are told as VANISHED.
func (c *Conn) qresyncEnabled() bool { return c.EnabledCaps().Has(imap.CapQResync) }

// CondStoreEnabled reports whether CONDSTORE is on for the connection
// (by ENABLE or an enabling command): unsolicited FETCH responses then
// carry MODSEQ.
func (c *Conn) CondStoreEnabled() bool { return c.EnabledCaps().Has(imap.CapCondStore) }
