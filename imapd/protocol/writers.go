package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/imapd/wire"
)

// UpdateWriter writes the unsolicited updates of a selected mailbox.
type UpdateWriter struct {
	conn         *Conn
	allowExpunge bool
}

var errExpungeNotAllowed = errors.New("protocol: EXPUNGE may not be sent after this command")

// WriteExpunge writes "* n EXPUNGE".
func (w *UpdateWriter) WriteExpunge(seq uint32) error {
	if !w.allowExpunge {
		return errExpungeNotAllowed
	}
	return w.conn.writeExpunge(seq)
}

// WriteNumMessages writes "* n EXISTS".
func (w *UpdateWriter) WriteNumMessages(n uint32) error {
	return w.conn.respond(func(e *wire.Encoder) { e.Star().Number(n).Raw(" EXISTS").CRLF() })
}

// WriteNumRecent writes "* n RECENT" to IMAP4rev1 clients.
func (w *UpdateWriter) WriteNumRecent(n uint32) error {
	if w.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		return nil
	}
	return w.conn.respond(func(e *wire.Encoder) { e.Star().Number(n).Raw(" RECENT").CRLF() })
}

// WriteMailboxFlags writes "* FLAGS (...)".
func (w *UpdateWriter) WriteMailboxFlags(flags []imap.Flag) error {
	return w.conn.respond(func(e *wire.Encoder) { e.Star().Raw("FLAGS ").Flags(flags).CRLF() })
}

// WriteMessageFlags writes "* n FETCH (UID u FLAGS (...))".
func (w *UpdateWriter) WriteMessageFlags(seq uint32, uid imap.UID, flags []imap.Flag) error {
	fw := &FetchWriter{conn: w.conn}
	m := fw.CreateMessage(seq)
	if uid != 0 {
		m.WriteUID(uid)
	}
	m.WriteFlags(flags)
	return m.Close()
}

// writeExpungeUIDs writes a run of expunges: one "* VANISHED uids" to a
// QRESYNC client (RFC 7162 3.2.10), "* n EXPUNGE" each to others.
func (w *UpdateWriter) writeExpungeUIDs(run []update) error {
	if !w.allowExpunge {
		return errExpungeNotAllowed
	}
	if w.conn.qresyncEnabled() {
		var uids imap.UIDSet
		for _, u := range run {
			uids.AddNum(u.expunged)
		}
		return w.conn.writeVanished(uids, false)
	}
	for _, u := range run {
		if err := w.conn.writeExpunge(u.expunge); err != nil {
			return err
		}
	}
	return nil
}

// writeMessageFlagsModSeq is WriteMessageFlags with MODSEQ for a CONDSTORE
// client (RFC 7162 3.1.4: every unsolicited FETCH carries it once
// enabled).
func (w *UpdateWriter) writeMessageFlagsModSeq(seq uint32, uid imap.UID, flags []imap.Flag, modseq uint64) error {
	fw := &FetchWriter{conn: w.conn}
	m := fw.CreateMessage(seq)
	if uid != 0 {
		m.WriteUID(uid)
	}
	m.WriteFlags(flags)
	if w.conn.CondStoreEnabled() {
		m.WriteModSeq(modseq)
	}
	return m.Close()
}

func (c *Conn) writeExpunge(seq uint32) error {
	return c.respond(func(e *wire.Encoder) { e.Star().Number(seq).Raw(" EXPUNGE").CRLF() })
}

// ExpungeWriter writes the EXPUNGE responses of EXPUNGE and UID EXPUNGE;
// CLOSE gets one that writes nothing (RFC 9051 6.4.1).
type ExpungeWriter struct {
	conn *Conn
}

// WriteExpunge writes "* n EXPUNGE".
func (w *ExpungeWriter) WriteExpunge(seq uint32) error {
	if w.conn == nil {
		return nil
	}
	return w.conn.writeExpunge(seq)
}

// MoveWriter writes the responses of MOVE (RFC 6851).
type MoveWriter struct {
	conn *Conn
}

// WriteCopyData writes "* OK [COPYUID ...]" before the expunges.
func (w *MoveWriter) WriteCopyData(data *imap.CopyData) error {
	return w.conn.respond(func(e *wire.Encoder) {
		e.Status("", imap.StatusResponseTypeOK, copyUIDCode(data), "Messages moved")
	})
}

// WriteExpunge writes "* n EXPUNGE".
func (w *MoveWriter) WriteExpunge(seq uint32) error { return w.conn.writeExpunge(seq) }

func copyUIDCode(data *imap.CopyData) string {
	if data == nil || data.UIDValidity == 0 {
		return ""
	}
	return fmt.Sprintf("COPYUID %d %s %s", data.UIDValidity, data.SourceUIDs, data.DestUIDs)
}

// ListWriter writes LIST (or LSUB) responses.
type ListWriter struct {
	conn    *Conn
	options *imap.ListOptions
	lsub    bool
}

// LSUB reports whether the responses are LSUB's (RFC 3501 6.3.9), which
// name an unsubscribed parent of subscribed mailboxes as \Noselect.
func (w *ListWriter) LSUB() bool { return w.lsub }

// WriteList writes one mailbox, and its STATUS for LIST-STATUS (RFC 5819).
func (w *ListWriter) WriteList(data *imap.ListData) error {
	if err := w.conn.writeList(data, w.lsub); err != nil {
		return err
	}
	if w.options != nil && w.options.ReturnStatus != nil && data.Status != nil {
		return w.conn.writeStatus(data.Status, w.options.ReturnStatus)
	}
	return nil
}

func (c *Conn) writeList(data *imap.ListData, lsub bool) error {
	name := "LIST"
	if lsub {
		name = "LSUB"
	}
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw(name).SP().Byte('(')
		for i, a := range data.Attrs {
			if i > 0 {
				e.SP()
			}
			e.Atom(string(a))
		}
		e.Raw(") ")
		if data.Delim == 0 {
			e.NIL()
		} else {
			e.String(string(data.Delim))
		}
		e.SP().Mailbox(data.Mailbox)
		if !lsub && (data.ChildInfo != nil || data.OldName != "") {
			e.Raw(" (")
			if data.ChildInfo != nil {
				e.Raw("CHILDINFO (")
				if data.ChildInfo.Subscribed {
					e.Raw(`"SUBSCRIBED"`)
				}
				e.Byte(')')
			}
			if data.OldName != "" {
				if data.ChildInfo != nil {
					e.SP()
				}
				e.Raw("OLDNAME (").Mailbox(data.OldName).Byte(')')
			}
			e.Byte(')')
		}
		e.CRLF()
	})
}

func (c *Conn) writeStatus(data *imap.StatusData, o *imap.StatusOptions) error {
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("STATUS ").Mailbox(data.Mailbox).Raw(" (")
		sep := ""
		item := func(name string) *wire.Encoder {
			e.Raw(sep).Raw(name).SP()
			sep = " "
			return e
		}
		num := func(p *uint32) {
			if p == nil {
				e.Number(0)
			} else {
				e.Number(*p)
			}
		}
		num64 := func(p *int64) {
			if p == nil {
				e.Number(0)
			} else {
				e.Number64(*p)
			}
		}
		if o.NumMessages {
			item("MESSAGES")
			num(data.NumMessages)
		}
		if o.UIDNext {
			item("UIDNEXT").Number(uint32(data.UIDNext))
		}
		if o.UIDValidity {
			item("UIDVALIDITY").Number(data.UIDValidity)
		}
		if o.NumUnseen {
			item("UNSEEN")
			num(data.NumUnseen)
		}
		if o.NumDeleted {
			item("DELETED")
			num(data.NumDeleted)
		}
		if o.Size {
			item("SIZE")
			num64(data.Size)
		}
		if o.AppendLimit {
			item("APPENDLIMIT")
			if data.AppendLimit == nil {
				e.NIL()
			} else {
				e.Number(*data.AppendLimit)
			}
		}
		if o.DeletedStorage {
			item("DELETED-STORAGE")
			num64(data.DeletedStorage)
		}
		if o.NumRecent {
			item("RECENT")
			num(data.NumRecent)
		}
		if o.HighestModSeq {
			item("HIGHESTMODSEQ").Number64(int64(data.HighestModSeq))
		}
		e.Byte(')').CRLF()
	})
}

// fetchNames are the response names of the items asked for by their
// RFC 3501 names (RFC822 is BODY[] but answered as RFC822).
type fetchNames struct {
	obsolete map[*imap.FetchItemBodySection]string
	// body and bodyStructure: which of BODY and BODYSTRUCTURE were asked.
	body, bodyStructure bool
}

// FetchWriter writes FETCH responses.
type FetchWriter struct {
	conn  *Conn
	names fetchNames
	// RFC 7162: VANISHED asked (UID FETCH), UNCHANGEDSINCE given
	// (STORE), and the messages a conditional STORE left alone.
	vanished       bool
	conditional    bool
	unchangedSince uint64
	modified       imap.NumSet
	// batch: the writer of a command (FETCH, STORE, SELECT's resync),
	// whose tagged response flushes everything; its FETCH responses stay
	// in the connection's buffer until then (or until the buffer is
	// full) rather than costing a write each. Unsolicited ones flush.
	batch bool
}

// Updates returns a writer of the mailbox's unsolicited updates on the
// same connection, for those that must precede a FETCH response (a FLAGS
// naming a new keyword). Expunges are not allowed on it.
func (w *FetchWriter) Updates() *UpdateWriter {
	return &UpdateWriter{conn: w.conn}
}

// CreateMessage starts "* seq FETCH (". The response lock is held until
// the returned writer is closed, which must happen on every path.
func (w *FetchWriter) CreateMessage(seq uint32) *FetchResponseWriter {
	c := w.conn
	c.encMu.Lock()
	c.mu.Lock()
	nc := c.conn
	c.enc.UTF8 = c.enabled.Has(imap.CapIMAP4rev2) || c.enabled.Has(imap.CapUTF8Accept)
	c.mu.Unlock()
	nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	c.enc.Star().Number(seq).Raw(" FETCH (")
	return &FetchResponseWriter{conn: c, e: c.enc, names: w.names, batch: w.batch}
}

// FetchResponseWriter writes the items of one message.
type FetchResponseWriter struct {
	conn   *Conn
	e      *wire.Encoder
	names  fetchNames
	items  int
	closed bool
	batch  bool // see FetchWriter.batch
}

func (w *FetchResponseWriter) item(name string) *wire.Encoder {
	if w.items > 0 {
		w.e.SP()
	}
	w.items++
	return w.e.Raw(name)
}

// WriteUID writes UID.
func (w *FetchResponseWriter) WriteUID(uid imap.UID) { w.item("UID ").Number(uint32(uid)) }

// WriteFlags writes FLAGS.
func (w *FetchResponseWriter) WriteFlags(flags []imap.Flag) { w.item("FLAGS ").Flags(flags) }

// WriteRFC822Size writes RFC822.SIZE.
func (w *FetchResponseWriter) WriteRFC822Size(size int64) { w.item("RFC822.SIZE ").Number64(size) }

// WriteInternalDate writes INTERNALDATE.
func (w *FetchResponseWriter) WriteInternalDate(t time.Time) { w.item("INTERNALDATE ").DateTime(t) }

// WriteEnvelope writes ENVELOPE, address groups included.
func (w *FetchResponseWriter) WriteEnvelope(env *envelope.Envelope) {
	if env == nil {
		env = &envelope.Envelope{}
	}
	w.item("ENVELOPE ").Envelope(env)
}

// WriteBodyStructure writes BODY, BODYSTRUCTURE or both, as asked.
func (w *FetchResponseWriter) WriteBodyStructure(bs imap.BodyStructure) {
	if w.names.body || !w.names.bodyStructure {
		w.item("BODY ").BodyStructure(bs, false)
	}
	if w.names.bodyStructure {
		w.item("BODYSTRUCTURE ").BodyStructure(bs, true)
	}
}

// WriteBodySection writes BODY[section]<origin> and returns the writer of
// its literal, which takes exactly size bytes and must be closed.
func (w *FetchResponseWriter) WriteBodySection(section *imap.FetchItemBodySection, size int64) io.WriteCloser {
	if name, ok := w.names.obsolete[section]; ok {
		w.item(name)
	} else {
		w.item("BODY[")
		writeSectionSpec(w.e, section)
		w.e.Byte(']')
		if section.Partial != nil {
			w.e.Byte('<').Number64(section.Partial.Offset).Byte('>')
		}
	}
	w.e.SP()
	return w.literal(size, false)
}

// WriteBinarySection writes BINARY[part]<origin> (RFC 3516) and returns the
// writer of its literal8.
func (w *FetchResponseWriter) WriteBinarySection(section *imap.FetchItemBinarySection, size int64) io.WriteCloser {
	w.item("BINARY[")
	writePart(w.e, section.Part)
	w.e.Byte(']')
	if section.Partial != nil {
		w.e.Byte('<').Number64(section.Partial.Offset).Byte('>')
	}
	w.e.SP()
	return w.literal(size, true)
}

// WriteBinarySectionSize writes BINARY.SIZE[part].
func (w *FetchResponseWriter) WriteBinarySectionSize(section *imap.FetchItemBinarySectionSize, size uint32) {
	w.item("BINARY.SIZE[")
	writePart(w.e, section.Part)
	w.e.Raw("] ").Number(size)
}

func (w *FetchResponseWriter) literal(size int64, binary bool) io.WriteCloser {
	if binary {
		w.e.Byte('~')
	}
	w.e.Byte('{').Number64(size).Raw("}\r\n")
	return &literalWriter{w: w.e, left: size, noNUL: !binary}
}

// Close ends the response and releases the response lock.
func (w *FetchResponseWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	defer w.conn.encMu.Unlock()
	w.e.Byte(')').CRLF()
	if w.batch {
		return w.e.Err()
	}
	return w.e.Flush()
}

// literalWriter passes the bytes of a literal to the encoder, exactly as
// many as announced.
// literalWriter writes a literal's announced number of bytes. A literal
// that is not a literal8 cannot hold NUL (RFC 3501 9, CHAR8 is %x01-ff): a
// NUL of the content (a binary part stored from an APPEND literal8, or a
// delivered message that had one) goes out as 0x80, as Dovecot does, so the
// size stays the announced one; BINARY[] sends it as it is, in a literal8.
type literalWriter struct {
	w     *wire.Encoder
	left  int64
	noNUL bool
}

var errLiteralSize = errors.New("protocol: literal written with a size other than announced")

func (l *literalWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errLiteralSize
	}
	l.left -= int64(len(p))
	rest := p
	for l.noNUL {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			break
		}
		l.w.RawBytes(rest[:i]).Byte(0x80)
		rest = rest[i+1:]
	}
	l.w.RawBytes(rest)
	return len(p), l.w.Err()
}

func (l *literalWriter) Close() error {
	if l.left != 0 {
		return errLiteralSize
	}
	return l.w.Err()
}

func writePart(e *wire.Encoder, part []int) {
	for i, n := range part {
		if i > 0 {
			e.Byte('.')
		}
		e.Raw(strconv.Itoa(n))
	}
}

func writeSectionSpec(e *wire.Encoder, s *imap.FetchItemBodySection) {
	writePart(e, s.Part)
	if s.Specifier == imap.PartSpecifierNone {
		return
	}
	if len(s.Part) > 0 {
		e.Byte('.')
	}
	e.Raw(string(s.Specifier))
	fields := s.HeaderFields
	if len(fields) > 0 {
		e.Raw(".FIELDS")
	} else if len(s.HeaderFieldsNot) > 0 {
		fields = s.HeaderFieldsNot
		e.Raw(".FIELDS.NOT")
	}
	if len(fields) > 0 {
		e.Raw(" (")
		for i, f := range fields {
			if i > 0 {
				e.SP()
			}
			e.AString(f)
		}
		e.Byte(')')
	}
}
