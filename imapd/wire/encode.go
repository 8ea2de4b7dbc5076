package wire

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
)

// maxQuoted is the longest string the Encoder sends quoted; longer ones go
// as literals, which clients read without scanning for escapes.
const maxQuoted = 1024

// Encoder writes responses. Its methods chain and the first write error
// sticks: check it with Err or Flush. It is not safe for concurrent use;
// the server serialises responses.
type Encoder struct {
	w *bufio.Writer
	// UTF8 allows UTF-8 in quoted strings and mailbox names (IMAP4rev2 or
	// ENABLE UTF8=ACCEPT); otherwise 8-bit strings go as literals and
	// mailbox names in modified UTF-7.
	UTF8 bool
	err  error
}

// NewEncoder writes responses to w.
func NewEncoder(w *bufio.Writer) *Encoder { return &Encoder{w: w} }

// Err returns the first write error.
func (e *Encoder) Err() error { return e.err }

// Flush sends what is buffered.
func (e *Encoder) Flush() error {
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

func (e *Encoder) raw(s string) *Encoder {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
	return e
}

// Raw writes s as it is: a fixed piece of syntax ("* ", "FETCH (").
func (e *Encoder) Raw(s string) *Encoder { return e.raw(s) }

// RawBytes writes b as it is: the bytes of a literal whose header the
// caller wrote.
func (e *Encoder) RawBytes(b []byte) *Encoder {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
	return e
}

// Byte writes one byte of syntax.
func (e *Encoder) Byte(c byte) *Encoder {
	if e.err == nil {
		e.err = e.w.WriteByte(c)
	}
	return e
}

// SP writes a space.
func (e *Encoder) SP() *Encoder { return e.Byte(' ') }

// CRLF ends a response line.
func (e *Encoder) CRLF() *Encoder { return e.raw("\r\n") }

// Star begins an untagged response.
func (e *Encoder) Star() *Encoder { return e.raw("* ") }

// Atom writes an atom; the caller knows it is one.
func (e *Encoder) Atom(s string) *Encoder { return e.raw(s) }

// Number writes a 32-bit number.
func (e *Encoder) Number(n uint32) *Encoder { return e.raw(strconv.FormatUint(uint64(n), 10)) }

// Number64 writes a 64-bit number.
func (e *Encoder) Number64(n int64) *Encoder { return e.raw(strconv.FormatInt(n, 10)) }

// NIL writes NIL.
func (e *Encoder) NIL() *Encoder { return e.raw("NIL") }

func (e *Encoder) quotable(s string) bool {
	if len(s) > maxQuoted {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c == '\r' || c == '\n' || (c >= 0x80 && !e.UTF8) {
			return false
		}
	}
	return !e.UTF8 || utf8.ValidString(s)
}

// String writes s quoted if the grammar allows, else as a literal.
func (e *Encoder) String(s string) *Encoder {
	if !e.quotable(s) {
		return e.LiteralString(s)
	}
	e.Byte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			e.Byte('\\')
		}
		e.Byte(s[i])
	}
	return e.Byte('"')
}

// NString writes s, or NIL for the empty string.
func (e *Encoder) NString(s string) *Encoder {
	if s == "" {
		return e.NIL()
	}
	return e.String(s)
}

// AString writes s as an atom when it is one, else as a string.
func (e *Encoder) AString(s string) *Encoder {
	if s == "" || strings.EqualFold(s, "NIL") {
		return e.String(s)
	}
	for i := 0; i < len(s); i++ {
		if !isAStringChar(s[i]) {
			return e.String(s)
		}
	}
	return e.raw(s)
}

// LiteralString writes s as a literal.
func (e *Encoder) LiteralString(s string) *Encoder {
	e.raw("{").Number64(int64(len(s))).raw("}\r\n")
	return e.raw(s)
}

// Literal writes a literal of exactly n bytes read from r; literal8 for
// binary content (RFC 3516 BINARY, which may hold NUL). A short r is an
// error: the response can no longer be finished.
func (e *Encoder) Literal(r io.Reader, n int64, binary bool) *Encoder {
	if binary {
		e.Byte('~')
	}
	e.raw("{").Number64(n).raw("}\r\n")
	if e.err != nil {
		return e
	}
	copied, err := io.CopyN(e.w, r, n)
	if err != nil {
		e.err = fmt.Errorf("literal of %d bytes ended after %d: %w", n, copied, err)
	}
	return e
}

// Mailbox writes a mailbox name: modified UTF-7 unless UTF-8 is on, and
// INBOX in capitals whatever its case.
func (e *Encoder) Mailbox(name string) *Encoder {
	if strings.EqualFold(name, "INBOX") {
		return e.raw("INBOX")
	}
	if !e.UTF8 {
		name = EncodeMailbox(name)
	}
	return e.AString(name)
}

// Flags writes a parenthesised flag list.
func (e *Encoder) Flags(flags []imap.Flag) *Encoder {
	e.Byte('(')
	for i, f := range flags {
		if i > 0 {
			e.SP()
		}
		e.raw(string(f))
	}
	return e.Byte(')')
}

// DateTime writes an INTERNALDATE (quoted date-time).
func (e *Encoder) DateTime(t time.Time) *Encoder {
	return e.raw(t.Format(`"02-Jan-2006 15:04:05 -0700"`))
}

// NumSet writes a sequence set or UID set.
func (e *Encoder) NumSet(s imap.NumSet) *Encoder { return e.raw(s.String()) }

// Status writes a status response: tagged when tag is set, untagged
// ("* OK ...") otherwise. code is the text inside the brackets, such as
// "APPENDUID 38505 3955"; text is made one line.
func (e *Encoder) Status(tag string, typ imap.StatusResponseType, code, text string) *Encoder {
	if tag == "" {
		tag = "*"
	}
	e.raw(tag).SP().raw(string(typ)).SP()
	if code != "" {
		e.Byte('[').raw(oneLine(code)).raw("] ")
	}
	if text == "" {
		text = "Done"
	}
	return e.raw(oneLine(text)).CRLF()
}

// Continuation writes a continuation request ("+ text").
func (e *Encoder) Continuation(text string) *Encoder {
	if text == "" {
		return e.raw("+\r\n")
	}
	return e.raw("+ ").raw(oneLine(text)).CRLF()
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\x00") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// Envelope writes an ENVELOPE (RFC 9051 7.5.2). Group markers in the
// address lists (envelope.Address.IsGroupStart, IsGroupEnd) are written as
// the group syntax of RFC 3501 7.4.2: (NIL NIL "name" NIL) ... (NIL NIL NIL
// NIL); an address's source route is its second field, the adl.
func (e *Encoder) Envelope(env *envelope.Envelope) *Encoder {
	e.Byte('(')
	if env.Date.IsZero() {
		e.NIL()
	} else {
		e.String(env.Date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	}
	e.SP().NString(env.Subject)
	for _, list := range env.Lists() {
		e.SP().addressList(list)
	}
	e.SP()
	if len(env.InReplyTo) == 0 {
		e.NIL()
	} else {
		ids := make([]string, len(env.InReplyTo))
		for i, id := range env.InReplyTo {
			ids[i] = "<" + id + ">"
		}
		e.String(strings.Join(ids, " "))
	}
	e.SP()
	if env.MessageID == "" {
		e.NIL()
	} else {
		e.String("<" + env.MessageID + ">")
	}
	return e.Byte(')')
}

func (e *Encoder) addressList(list []envelope.Address) *Encoder {
	if len(list) == 0 {
		return e.NIL()
	}
	e.Byte('(')
	for _, a := range list {
		e.Byte('(').NString(a.Name).SP().NString(a.ADL).SP().NString(a.Mailbox).SP().NString(a.Host).Byte(')')
	}
	return e.Byte(')')
}

// BodyStructure writes BODY (extended false) or BODYSTRUCTURE (extended
// true) for bs (RFC 9051 7.5.2). Types, subtypes and parameter names go
// out in the case they were stored in; they are case-insensitive.
func (e *Encoder) BodyStructure(bs imap.BodyStructure, extended bool) *Encoder {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		return e.multiPart(bs, extended)
	case *imap.BodyStructureSinglePart:
		return e.singlePart(bs, extended)
	}
	// No structure known: say the message is empty text rather than
	// breaking the response.
	return e.raw(`("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0)`)
}

func (e *Encoder) multiPart(bs *imap.BodyStructureMultiPart, extended bool) *Encoder {
	e.Byte('(')
	for _, child := range bs.Children {
		e.BodyStructure(child, extended)
	}
	if len(bs.Children) == 0 {
		// 1*body: an empty multipart still needs one part.
		e.BodyStructure(nil, extended)
	}
	e.SP().String(bs.Subtype)
	if extended {
		ext := bs.Extended
		if ext == nil {
			ext = &imap.BodyStructureMultiPartExt{}
		}
		e.SP().params(ext.Params).SP().disposition(ext.Disposition).SP().language(ext.Language).SP().NString(ext.Location)
	}
	return e.Byte(')')
}

func (e *Encoder) singlePart(bs *imap.BodyStructureSinglePart, extended bool) *Encoder {
	enc := bs.Encoding
	if enc == "" {
		enc = "7BIT"
	}
	e.Byte('(').String(bs.Type).SP().String(bs.Subtype).SP().params(bs.Params)
	e.SP().NString(bs.ID).SP().NString(bs.Description).SP().String(enc).SP().Number(bs.Size)
	if m := bs.MessageRFC822; m != nil && strings.EqualFold(bs.Type, "message") {
		env := envelope.FromIMAP(m.Envelope)
		if env == nil {
			env = &envelope.Envelope{}
		}
		e.SP().Envelope(env).SP().BodyStructure(m.BodyStructure, extended).SP().Number64(m.NumLines)
	} else if strings.EqualFold(bs.Type, "text") {
		var lines int64
		if bs.Text != nil {
			lines = bs.Text.NumLines
		}
		e.SP().Number64(lines)
	}
	if extended {
		ext := bs.Extended
		if ext == nil {
			ext = &imap.BodyStructureSinglePartExt{}
		}
		// body-fld-md5 is not kept.
		e.SP().NIL().SP().disposition(ext.Disposition).SP().language(ext.Language).SP().NString(ext.Location)
	}
	return e.Byte(')')
}

func (e *Encoder) params(p map[string]string) *Encoder {
	if len(p) == 0 {
		return e.NIL()
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.Byte('(')
	for i, k := range keys {
		if i > 0 {
			e.SP()
		}
		e.String(k).SP().String(p[k])
	}
	return e.Byte(')')
}

func (e *Encoder) disposition(d *imap.BodyStructureDisposition) *Encoder {
	if d == nil || d.Value == "" {
		return e.NIL()
	}
	return e.Byte('(').String(d.Value).SP().params(d.Params).Byte(')')
}

func (e *Encoder) language(langs []string) *Encoder {
	switch len(langs) {
	case 0:
		return e.NIL()
	case 1:
		return e.String(langs[0])
	}
	e.Byte('(')
	for i, l := range langs {
		if i > 0 {
			e.SP()
		}
		e.String(l)
	}
	return e.Byte(')')
}
