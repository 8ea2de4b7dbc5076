package protocol

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Body sections (RFC 9051 6.4.5 BODY[...]) and their decoded form (RFC
// 3516 BINARY[...]), cut from the stored bytes of a message. Part numbers
// follow the RFC: inside a message/rfc822 part they number the parts of
// the enclosed message, and part 1 of a single-part entity is its body.

// maxPartDepth bounds the descent into parts, whatever the path asks.
const maxPartDepth = 100

// entity is one MIME entity: its header (with the blank line ending it)
// and its body.
type entity struct {
	header, body []byte
}

func splitEntity(b []byte) entity {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return entity{header: b[:2], body: b[2:]}
	}
	if bytes.HasPrefix(b, []byte("\n")) {
		return entity{header: b[:1], body: b[1:]}
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		if j := bytes.Index(b, []byte("\n\n")); j < 0 || j > i {
			return entity{header: b[:i+4], body: b[i+4:]}
		}
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return entity{header: b[:i+2], body: b[i+2:]}
	}
	return entity{header: b}
}

// headerField is one field of a header, with its continuation lines.
type headerField struct {
	name string
	raw  []byte
}

func headerFields(h []byte) []headerField {
	var fields []headerField
	for len(h) > 0 {
		end := bytes.IndexByte(h, '\n')
		if end < 0 {
			end = len(h) - 1
		}
		line := h[:end+1]
		h = h[end+1:]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the blank line
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.raw = append(f.raw, line...)
			continue
		}
		name := line
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name = line[:i]
		}
		fields = append(fields, headerField{name: strings.TrimSpace(string(name)), raw: append([]byte(nil), line...)})
	}
	return fields
}

func (e entity) field(name string) string {
	for _, f := range headerFields(e.header) {
		if strings.EqualFold(f.name, name) {
			v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
			// Unfolding removes the line break only; the whitespace
			// after it stays (RFC 5322 2.2.3), so a folded boundary
			// keeps its single space.
			return strings.TrimSpace(strings.NewReplacer("\r\n", "", "\n", "").Replace(string(v)))
		}
	}
	return ""
}

// mediaType returns the entity's type and parameters; text/plain when it
// has none or a broken one (RFC 2045 5.2). In a multipart/digest the
// default is message/rfc822.
func (e entity) mediaType(inDigest bool) (string, map[string]string) {
	v := e.field("Content-Type")
	if v == "" {
		if inDigest {
			return "message/rfc822", nil
		}
		return "text/plain", nil
	}
	t, params, err := mime.ParseMediaType(v)
	if err != nil {
		return "text/plain", nil
	}
	return t, params
}

// parts splits a multipart body at its boundary; the CRLF before a
// delimiter belongs to the delimiter (RFC 2046 5.1.1).
func parts(body []byte, boundary string) [][]byte {
	if boundary == "" {
		return nil
	}
	delim := []byte("--" + boundary)
	var out [][]byte
	start := -1
	for pos := 0; pos <= len(body); {
		lineEnd := bytes.IndexByte(body[pos:], '\n')
		var line []byte
		next := len(body) + 1
		if lineEnd < 0 {
			line = body[pos:]
		} else {
			line = body[pos : pos+lineEnd+1]
			next = pos + lineEnd + 1
		}
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t\r\n")
			if len(rest) == 0 || bytes.Equal(rest, []byte("--")) {
				if start >= 0 {
					end := pos
					if end > start && body[end-1] == '\n' {
						end--
						if end > start && body[end-1] == '\r' {
							end--
						}
					}
					out = append(out, body[start:end])
				}
				if len(rest) == 2 {
					return out
				}
				start = next
				if start > len(body) {
					start = len(body)
				}
			}
		}
		pos = next
	}
	if start >= 0 && start < len(body) {
		out = append(out, body[start:]) // no closing delimiter
	}
	return out
}

// findPart walks a part path from the message; ok is false for a part
// that does not exist. inDigest reports that e is a part of a
// multipart/digest, whose default type is message/rfc822 (RFC 2046 5.1.5).
func findPart(raw []byte, path []int) (e entity, inDigest, ok bool) {
	if len(path) > maxPartDepth {
		return entity{}, false, false
	}
	e = splitEntity(raw)
	isMessage := true // e is a whole message: its parts are numbered
	for _, n := range path {
		if !isMessage {
			if t, _ := e.mediaType(inDigest); isMessageType(t) {
				e, isMessage, inDigest = splitEntity(e.body), true, false
			}
		}
		t, params := e.mediaType(inDigest)
		if strings.HasPrefix(t, "multipart/") {
			ps := parts(e.body, params["boundary"])
			if n < 1 || n > len(ps) {
				return entity{}, false, false
			}
			e, isMessage, inDigest = splitEntity(ps[n-1]), false, t == "multipart/digest"
			continue
		}
		// Part 1 of a single-part message is its body; a single part has
		// no parts of its own.
		if n != 1 || !isMessage {
			return entity{}, false, false
		}
		isMessage, inDigest = false, false
	}
	return e, inDigest, true
}

func isMessageType(t string) bool { return t == "message/rfc822" || t == "message/global" }

// ExtractBodySection returns BODY[section] of a message, with its
// <partial> applied; nil if the part does not exist.
func ExtractBodySection(raw []byte, s *imap.FetchItemBodySection) []byte {
	var out []byte
	if len(s.Part) == 0 {
		out = bodySpecifier(splitEntity(raw), raw, s)
	} else {
		e, inDigest, ok := findPart(raw, s.Part)
		if !ok {
			return nil
		}
		switch s.Specifier {
		case imap.PartSpecifierNone:
			out = e.body
		case imap.PartSpecifierMIME:
			out = e.header
		default:
			// HEADER and TEXT of a part are those of the message it
			// encloses (message/rfc822).
			if t, _ := e.mediaType(inDigest); !isMessageType(t) {
				return nil
			}
			inner := splitEntity(e.body)
			out = bodySpecifier(inner, e.body, s)
		}
	}
	return applyPartial(out, s.Partial)
}

func bodySpecifier(e entity, raw []byte, s *imap.FetchItemBodySection) []byte {
	switch s.Specifier {
	case imap.PartSpecifierHeader:
		if len(s.HeaderFields) == 0 && len(s.HeaderFieldsNot) == 0 {
			return e.header
		}
		var b []byte
		for _, f := range headerFields(e.header) {
			if matchField(f.name, s.HeaderFields, s.HeaderFieldsNot) {
				b = append(b, f.raw...)
			}
		}
		return append(b, "\r\n"...)
	case imap.PartSpecifierText:
		return e.body
	}
	return raw
}

func matchField(name string, want, notWant []string) bool {
	if len(want) > 0 {
		for _, w := range want {
			if strings.EqualFold(w, name) {
				return true
			}
		}
		return false
	}
	for _, w := range notWant {
		if strings.EqualFold(w, name) {
			return false
		}
	}
	return true
}

func applyPartial(b []byte, p *imap.SectionPartial) []byte {
	if b == nil {
		b = []byte{}
	}
	if p == nil {
		return b
	}
	if p.Offset < 0 || p.Offset >= int64(len(b)) {
		return []byte{}
	}
	end := int64(len(b))
	if p.Size >= 0 && p.Offset+p.Size < end {
		end = p.Offset + p.Size
	}
	return b[p.Offset:end]
}

// decodedPart returns the content of a part with its transfer encoding
// undone (RFC 3516); ok is false for a part that does not exist.
func decodedPart(raw []byte, part []int) ([]byte, bool) {
	if len(part) == 0 {
		return raw, true
	}
	e, _, ok := findPart(raw, part)
	if !ok {
		return nil, false
	}
	switch strings.ToLower(e.field("Content-Transfer-Encoding")) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, e.body)
		clean = bytes.TrimRight(clean, "=")
		out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
		n, _ := base64.RawStdEncoding.Decode(out, clean)
		return out[:n], true
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(e.body)))
		return out, true
	}
	return e.body, true
}

// ExtractBinarySection returns BINARY[part] with its <partial>; nil if
// the part does not exist.
func ExtractBinarySection(raw []byte, s *imap.FetchItemBinarySection) []byte {
	b, ok := decodedPart(raw, s.Part)
	if !ok {
		return nil
	}
	return applyPartial(b, s.Partial)
}

// ExtractBinarySectionSize returns BINARY.SIZE[part].
func ExtractBinarySectionSize(raw []byte, s *imap.FetchItemBinarySectionSize) uint32 {
	b, _ := decodedPart(raw, s.Part)
	return uint32(min(int64(len(b)), 1<<32-1))
}
