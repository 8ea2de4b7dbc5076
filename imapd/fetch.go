package imapd

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// Fetch implements protocol.Session.
func (s *session) Fetch(w *protocol.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	cmd := "FETCH"
	if options.UID {
		cmd = "UID FETCH"
	}
	defer s.guard(cmd, &err)
	v, err := s.selected()
	if err != nil {
		return err
	}
	refs := v.resolve(numSet)
	// RFC 3501 6.4.5: BODY[...] and BINARY[...] without .PEEK set \Seen,
	// except in a read-only selection (EXAMINE).
	markSeen := !v.readOnly && wantsSeen(options)
	if markSeen && s.conn.CondStoreEnabled() {
		// RFC 7162 3.1.4: the FLAGS a fetch changes come with MODSEQ.
		o := *options
		o.ModSeq = true
		options = &o
	}
	if options.ChangedSince > 0 {
		return s.fetchChanged(v, w, numSet, refs, options, markSeen)
	}
	return s.fetchRefs(v, w, refs, options, markSeen)
}

// streamBodyOver is the size above which FETCH streams a body from the
// store (storage.ReadBody) instead of loading it with its chunk of
// messages: a chunk then holds at most loadChunk bodies of this size, and
// a large message is never held whole for BODY[].
const streamBodyOver = 64 << 10

// streamCopyBuffer is what one streamed literal is copied through.
const streamCopyBuffer = 64 << 10

// fetchRefs loads messages in chunks with only what options need and
// writes one FETCH response each. Envelope and body structure come from
// storage as computed at delivery; the body is only loaded for sections,
// and a large one is streamed (streamBodyOver).
func (s *session) fetchRefs(v *mailboxView, w *protocol.FetchWriter, refs []msgRef, options *imap.FetchOptions, markSeen bool) error {
	load := storage.LoadOptions{
		Envelope:      options.Envelope,
		BodyStructure: options.BodyStructure != nil,
		Body:          len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0,
		BodyMax:       streamBodyOver,
	}
	byUID := make(map[imap.UID]*storage.Message, min(len(refs), loadChunk))
	for len(refs) > 0 {
		chunk := refs[:min(len(refs), loadChunk)]
		refs = refs[len(chunk):]
		msgs, err := s.srv.store.Messages(s.ctx, s.user, v.box.key.id, refUIDs(chunk), load)
		if err != nil {
			return s.storageError("FETCH", err)
		}
		clear(byUID)
		for _, m := range msgs {
			byUID[m.UID] = m
		}
		var seenSet map[imap.UID]bool
		if markSeen {
			if seenSet, err = s.markSeen(v, msgs); err != nil {
				return err
			}
		}
		v.box.learnKeywords(msgs)
		// A keyword new to the mailbox is announced in FLAGS before a
		// FETCH shows it (RFC 3501 7.2.6); the updates queued before the
		// first expunge can go out now without renumbering anything. An
		// update written then may be newer than what was loaded (another
		// session's change committed in between): the message is then
		// shown as that update showed it, so the client never sees an
		// older MODSEQ after a newer one (RFC 7162 3.1.2).
		shown, err := v.tracker.PollShown(w.Updates(), false)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if sh, ok := shown[m.UID]; ok && sh.ModSeq > m.ModSeq {
				m.Flags, m.ModSeq = slices.Clone(sh.Flags), sh.ModSeq
			}
		}
		v.addRecentFlags(msgs)
		for _, ref := range chunk {
			m := byUID[ref.uid]
			if m == nil {
				continue // expunged since resolve: nothing to show
			}
			if !load.Body || m.Body != nil || m.Size == 0 {
				if err := writeMessage(w, v.tracker, ref.seq, m, options, seenSet[m.UID], nil); err != nil {
					return err
				}
				continue
			}
			called := false
			err := s.srv.store.ReadBody(s.ctx, s.user, v.box.key.id, m.UID, func(body *io.SectionReader) error {
				called = true
				return writeMessage(w, v.tracker, ref.seq, m, options, seenSet[m.UID], body)
			})
			switch {
			case err == nil:
			case !called && errors.Is(err, storage.ErrNotFound):
				continue // expunged since loaded
			case !called:
				return s.storageError("FETCH", err)
			case errors.Is(err, errLiteralCut):
				// Part of a literal is out: the stream cannot be resynchronised.
				s.log.Warn("FETCH: a streamed body could not be sent to its end; closing the connection", "err", err)
				s.conn.NetConn().Close()
				return err
			default:
				return err
			}
		}
	}
	return nil
}

// markSeen sets \Seen on the messages that lack it and returns those whose
// flags changed; their FETCH response must carry FLAGS (RFC 3501 6.4.5).
// The write is tagged with this session as origin, so the flag event is
// not echoed back to it.
func (s *session) markSeen(v *mailboxView, msgs []*storage.Message) (map[imap.UID]bool, error) {
	var unseen []imap.UID
	for _, m := range msgs {
		if !hasFlag(m.Flags, imap.FlagSeen) {
			unseen = append(unseen, m.UID)
		}
	}
	if len(unseen) == 0 {
		return nil, nil
	}
	updates, err := s.srv.store.StoreFlags(s.ctx, s.user, v.box.key.id, unseen, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen})
	if err != nil {
		return nil, s.storageError("FETCH", err)
	}
	changed := make(map[imap.UID]bool, len(updates))
	newFlags := make(map[imap.UID]storage.FlagUpdate, len(updates))
	for _, u := range updates {
		changed[u.UID] = true
		newFlags[u.UID] = u
	}
	for _, m := range msgs {
		if changed[m.UID] {
			m.Flags, m.ModSeq = newFlags[m.UID].Flags, newFlags[m.UID].ModSeq
		}
	}
	return changed, nil
}

func wantsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// writeMessage writes one FETCH response. The response writer holds
// the connection's response lock until closed, so it is closed on every path,
// including a panic, or the connection would hang.
//
// The message's raw bytes are m.Body or, when stream is not nil, stream
// (storage.ReadBody): BODY[] and its partial ranges are then copied as
// they are written, and other sections are extracted from it.
func writeMessage(w *protocol.FetchWriter, st *protocol.SessionTracker, seq uint32, m *storage.Message, o *imap.FetchOptions, flagsChanged bool, stream *io.SectionReader) (err error) {
	if o.Flags || flagsChanged || o.ModSeq {
		// The client learns the message's state as of m.ModSeq: an
		// update queued for it from before must not follow.
		st.Told(m.UID, m.ModSeq)
	}
	rw := w.CreateMessage(seq)
	closed := false
	defer func() {
		if !closed {
			rw.Close()
		}
	}()
	if o.UID {
		rw.WriteUID(m.UID)
	}
	if o.Flags || flagsChanged {
		flags := m.Flags
		if flags == nil {
			flags = []imap.Flag{}
		}
		rw.WriteFlags(flags)
	}
	if o.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if o.ModSeq {
		rw.WriteModSeq(m.ModSeq)
	}
	if o.Envelope {
		rw.WriteEnvelope(m.Envelope)
	}
	if o.BodyStructure != nil {
		rw.WriteBodyStructure(completeBodyStructure(m.BodyStructure, m.Size))
	}
	// Sections other than the whole message are extracted from the
	// message's bytes: a streamed one is read once, when the first such
	// section asks for it (protocol's extractors take bytes).
	var whole []byte
	var readErr error
	raw := func() []byte {
		if stream == nil {
			return m.Body
		}
		if whole == nil && readErr == nil {
			whole, readErr = io.ReadAll(io.NewSectionReader(stream, 0, stream.Size()))
		}
		return whole
	}
	for _, bs := range o.BodySection {
		if wholeMessage(bs) && stream != nil {
			off, n := partialRange(stream.Size(), bs.Partial)
			if err := streamLiteral(rw.WriteBodySection(bs, n), io.NewSectionReader(stream, off, n)); err != nil {
				return err
			}
			continue
		}
		if wholeMessage(bs) {
			off, n := partialRange(int64(len(m.Body)), bs.Partial)
			if err := writeLiteral(rw.WriteBodySection(bs, n), m.Body[off:off+n]); err != nil {
				return err
			}
			continue
		}
		b := protocol.ExtractBodySection(raw(), bs)
		if readErr != nil {
			return fmt.Errorf("read message %d: %w", m.UID, readErr)
		}
		if b == nil {
			b = []byte{}
		}
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		// RFC 3516: the part with its content transfer encoding undone.
		// The decoded part is held (its size goes before it); the raw
		// message is read from the store, not copied.
		b := protocol.ExtractBinarySection(raw(), bs)
		if readErr != nil {
			return fmt.Errorf("read message %d: %w", m.UID, readErr)
		}
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bss := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, protocol.ExtractBinarySectionSize(raw(), bss))
	}
	closed = true
	if err := rw.Close(); err != nil {
		return fmt.Errorf("write FETCH response: %w", err)
	}
	return nil
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, werr := wc.Write(b)
	cerr := wc.Close()
	if werr != nil {
		return fmt.Errorf("write FETCH literal: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("write FETCH literal: %w", cerr)
	}
	return nil
}

// errLiteralCut marks a streamed literal that failed after its size was
// announced: the connection cannot carry on.
var errLiteralCut = errors.New("literal cut short")

// streamLiteral copies a literal from r as it is written. An empty one
// (a partial fetch from past the end, RFC 3501 6.4.5) copies nothing:
// io.CopyBuffer panics on an empty buffer.
func streamLiteral(wc io.WriteCloser, r *io.SectionReader) error {
	var cerr error
	if r.Size() > 0 {
		buf := make([]byte, min(r.Size(), streamCopyBuffer))
		_, cerr = io.CopyBuffer(struct{ io.Writer }{wc}, struct{ io.Reader }{r}, buf)
	}
	if err := wc.Close(); err != nil && cerr == nil {
		cerr = err
	}
	if cerr != nil {
		return fmt.Errorf("write FETCH literal: %w: %w", errLiteralCut, cerr)
	}
	return nil
}

// wholeMessage reports whether a BODY[...] section is the whole message,
// the common case, served from the stored bytes as they are.
func wholeMessage(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0
}

// partialRange applies <offset.size> (RFC 3501 6.4.5) to a message of
// size bytes: past the end is empty.
func partialRange(size int64, p *imap.SectionPartial) (off, n int64) {
	if p == nil {
		return 0, size
	}
	if p.Offset < 0 || p.Offset >= size {
		return 0, 0
	}
	end := p.Offset + p.Size
	if p.Size < 0 || end > size {
		end = size
	}
	return p.Offset, end - p.Offset
}

// completeBodyStructure returns bs complete: no nil structure, no
// multipart without parts, every part with its extension data (go-imap's
// writer panicked on those; protocol's writes them as it can, but a
// client deserves a full BODYSTRUCTURE). Stored structures are complete,
// so this normally returns bs itself.
func completeBodyStructure(bs imap.BodyStructure, size int64) imap.BodyStructure {
	if bodyStructureComplete(bs) {
		return bs
	}
	return repairBodyStructure(bs, size)
}

func bodyStructureComplete(bs imap.BodyStructure) bool {
	switch b := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if b == nil || b.Extended == nil {
			return false
		}
		if b.MessageRFC822 != nil {
			return bodyStructureComplete(b.MessageRFC822.BodyStructure)
		}
		return true
	case *imap.BodyStructureMultiPart:
		if b == nil || b.Extended == nil || len(b.Children) == 0 {
			return false
		}
		for _, c := range b.Children {
			if !bodyStructureComplete(c) {
				return false
			}
		}
		return true
	}
	return false
}

func repairBodyStructure(bs imap.BodyStructure, size int64) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if b != nil {
			c := *b
			if c.Extended == nil {
				c.Extended = &imap.BodyStructureSinglePartExt{}
			}
			if c.MessageRFC822 != nil {
				m := *c.MessageRFC822
				m.BodyStructure = repairBodyStructure(m.BodyStructure, 0)
				c.MessageRFC822 = &m
			}
			return &c
		}
	case *imap.BodyStructureMultiPart:
		if b != nil && len(b.Children) > 0 {
			c := *b
			c.Children = make([]imap.BodyStructure, len(b.Children))
			for i, child := range b.Children {
				c.Children[i] = repairBodyStructure(child, 0)
			}
			if c.Extended == nil {
				c.Extended = &imap.BodyStructureMultiPartExt{}
			}
			return &c
		}
	}
	return &imap.BodyStructureSinglePart{
		Type:     "text",
		Subtype:  "plain",
		Size:     uint32(min(max(size, 0), int64(^uint32(0)))),
		Text:     &imap.BodyStructureText{},
		Extended: &imap.BodyStructureSinglePartExt{},
	}
}
