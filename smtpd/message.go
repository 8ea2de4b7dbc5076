package smtpd

import (
	"bytes"
	"crypto/rand"
	"mime"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/pochta/pochta/message"
)

// editedMessage is a received message ready for storage: its copies share
// the body bytes where they can.
type editedMessage struct {
	sent      []byte // the sender's copy: keeps Bcc
	delivered []byte // the recipients' copy: no Bcc, with Return-Path
	relayed   []byte // the copy for the relay: no Bcc, no Return-Path
	messageID string // the Message-ID field's value (added when missing)
	subject   string // the Subject, RFC 2047 words decoded
	important bool   // high importance: recipients' copies get $Important
}

// flagImportant is the IMAP keyword of RFC 8457 that recipients' copies of
// a high-importance message carry from delivery on, so Thunderbird and
// Outlook show it without a plugin (the seed's "high importance").
const flagImportant = "$Important"

// isImportant reports whether the header marks the message high
// importance, in any of the three forms clients write: Importance: high
// (RFC 2156, Outlook), X-Priority: 1 or 2 (Thunderbird, also written
// "1 (Highest)") and Priority: urgent (RFC 2156).
func (h header) isImportant(raw []byte) bool {
	if strings.EqualFold(h.value(raw, "Importance"), "high") {
		return true
	}
	if strings.EqualFold(h.value(raw, "Priority"), "urgent") {
		return true
	}
	p := h.value(raw, "X-Priority")
	if i := strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		p = p[:i]
	}
	return p == "1" || p == "2"
}

type prepareInput struct {
	received   string // a complete Received field, CRLF-terminated
	returnPath string // the envelope sender ("" for the null sender)
	hostname   string // right-hand side of a created Message-ID
	now        time.Time
	// addFrom, when set, is the address of a From field to add: the
	// message has none and was submitted by this user (RFC 6409 8.1).
	addFrom string
}

// maxTraceFields bounds what prepareMessage puts in front of a message's
// own header: Return-Path (an address, at most 256 octets by RFC 5321
// 4.5.3.1.3) plus the Received field (an EHLO name cut to 255, an IP, a
// host name of at most 253, an ID, one address and a date), with room to
// spare. Messages are read into a buffer with this much headroom, so the
// copies can be edited in place.
const maxTraceFields = 2048

// prepareMessage edits the header of raw; see editHeader.
func prepareMessage(raw []byte, in prepareInput) editedMessage {
	buf := make([]byte, maxTraceFields, maxTraceFields+len(raw))
	return editHeader(append(buf, raw...), maxTraceFields, in)
}

// editHeader edits the header of the message buf[headroom:] without
// re-serialising anything else: line endings become CRLF, the Received
// field goes on top, Message-ID and Date (and From, with in.addFrom) are
// added when missing (RFC 6409 8.1, 8.3, 8.4), and the recipients' copy
// gets a Return-Path (RFC 5321 4.4, final delivery) and loses every Bcc
// field with its continuation lines (RFC 5322 3.6.3).
//
// The body is not copied: the recipients' and the relay's copies are both
// slices of buf, their header written into the headroom and over the
// original header, right in front of the body. Only a message with a Bcc
// field costs a second copy, the sender's, which keeps it.
func editHeader(buf []byte, headroom int, in prepareInput) editedMessage {
	raw := message.NormalizeLineEndings(buf[headroom:])
	if len(raw) != len(buf)-headroom {
		buf = append(make([]byte, headroom, headroom+len(raw)), raw...)
		raw = buf[headroom:]
	}
	h := scanHeader(raw)

	var added []byte
	inPlace := true
	if h.end > 0 && raw[h.end-1] != '\n' {
		// The header runs to the end of the data without a final CRLF
		// (BDAT allows that). The CRLF goes into the last field itself:
		// added after it, it would be left behind as an empty line when
		// that field is a Bcc and is dropped, and turn the fields added
		// below into body. There is no body to share.
		raw = append(raw[:h.end:h.end], "\r\n"...)
		h.fields[len(h.fields)-1].end, h.end = len(raw), len(raw)
		inPlace = false
	}
	messageID := strings.TrimSpace(h.value(raw, "Message-ID"))
	if messageID == "" {
		messageID = "<" + rand.Text() + "@" + in.hostname + ">"
		added = append(added, "Message-ID: "+messageID+"\r\n"...)
	}
	if !h.has("Date") {
		added = append(added, "Date: "+in.now.Format(time.RFC1123Z)+"\r\n"...)
	}
	if in.addFrom != "" && !h.has("From") {
		added = append(added, "From: "+in.addFrom+"\r\n"...)
	}
	if !h.blank && h.end < len(raw) {
		// RFC 5322 2.1: the body follows an empty line. Without one, the
		// first non-field line would be read as a broken header field.
		added = append(added, "\r\n"...)
	}
	m := editedMessage{
		messageID: messageID,
		subject:   decodeHeaderValue(h.value(raw, "Subject")),
		important: h.isImportant(raw),
	}

	// header returns the header of a copy (without its Return-Path).
	header := func(skipBcc bool) []byte {
		out := make([]byte, 0, len(in.received)+h.end+len(added))
		out = append(out, in.received...)
		pos := 0
		if skipBcc {
			for _, f := range h.fields {
				if strings.EqualFold(f.name, "Bcc") {
					out = append(out, raw[pos:f.start]...)
					pos = f.end
				}
			}
		}
		out = append(out, raw[pos:h.end]...)
		return append(out, added...)
	}
	body := raw[h.end:]
	hasBcc := h.has("Bcc")
	returnPath := "Return-Path: <" + in.returnPath + ">\r\n"
	relayHeader := header(true)
	if hasBcc {
		sentHeader := header(false)
		m.sent = append(append(make([]byte, 0, len(sentHeader)+len(body)), sentHeader...), body...)
	}
	bodyStart := headroom + h.end
	if start := bodyStart - len(relayHeader) - len(returnPath); inPlace && start >= 0 {
		copy(buf[start:], returnPath)
		copy(buf[start+len(returnPath):], relayHeader)
		m.delivered = buf[start:]
		m.relayed = buf[start+len(returnPath):]
	} else {
		m.relayed = append(relayHeader, body...)
		m.delivered = append([]byte(returnPath), m.relayed...)
	}
	if !hasBcc {
		// Without Bcc the sender's copy is the relay's, byte for byte.
		m.sent = m.relayed
	}
	return m
}

// value returns the unfolded value of the first field called name, or "".
func (h header) value(raw []byte, name string) string {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			line := string(raw[f.start:f.end])
			v := line[strings.IndexByte(line, ':')+1:]
			v = strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// decodeHeaderValue decodes RFC 2047 encoded words; undecodable text is
// kept as it is.
func decodeHeaderValue(v string) string {
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// header locates the header fields of a raw message.
type header struct {
	fields []headerField
	end    int  // offset just past the last field (the empty line or body)
	blank  bool // an empty line follows the fields
}

// headerField is one field with its continuation lines: raw[start:end].
type headerField struct {
	name       string
	start, end int
}

func (h header) has(name string) bool {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// scanHeader finds the header fields at the start of raw (CRLF lines). The
// header ends at the first empty line, or at the first line that is
// neither a field nor a continuation; everything from there on is the body.
func scanHeader(raw []byte) header {
	var h header
	pos := 0
	for pos < len(raw) {
		next := len(raw)
		if i := bytes.IndexByte(raw[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		line := raw[pos:next]
		if bytes.Equal(line, []byte("\r\n")) {
			h.blank = true
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// RFC 5322 2.2.3: a folded continuation of the previous field.
			if len(h.fields) == 0 {
				break
			}
			h.fields[len(h.fields)-1].end = next
			pos = next
			continue
		}
		name, ok := fieldName(line)
		if !ok {
			break
		}
		h.fields = append(h.fields, headerField{name: name, start: pos, end: next})
		pos = next
	}
	h.end = pos
	return h
}

// fieldName returns the name of a field line. RFC 5322 3.6.8: printable
// US-ASCII except colon; obsolete syntax (4.5.8) allows blanks before it.
func fieldName(line []byte) (string, bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return "", false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return "", false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(name), true
}

// receivedInfo is what the Received field records.
type receivedInfo struct {
	helo     string
	remote   netip.Addr
	hostname string
	protocol string
	id       string
	rcpt     string // the recipient when there is only one
	date     time.Time
}

// receivedField builds the trace field of RFC 5321 4.4, folded so no line
// gets long:
//
//	Received: from HELO ([IP])
//		by HOSTNAME with ESMTPSA id ID
//		for <RCPT>;
//		DATE
func receivedField(r receivedInfo) string {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(sanitizeHelo(r.helo))
	b.WriteString(" (")
	b.WriteString(addressLiteral(r.remote))
	b.WriteString(")\r\n\tby ")
	b.WriteString(r.hostname)
	b.WriteString(" with ")
	b.WriteString(r.protocol)
	b.WriteString(" id ")
	b.WriteString(r.id)
	if r.rcpt != "" {
		b.WriteString("\r\n\tfor <")
		b.WriteString(r.rcpt)
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(r.date.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.String()
}

// withProtocol names the transfer in Received's "with" clause (RFC 3848).
func withProtocol(tls, auth bool) string {
	switch {
	case tls && auth:
		return "ESMTPSA"
	case tls:
		return "ESMTPS"
	case auth:
		return "ESMTPA"
	}
	return "ESMTP"
}

// addressLiteral formats an IP as in RFC 5321 4.1.3.
func addressLiteral(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is4():
		return "[" + a.String() + "]"
	}
	return "[IPv6:" + a.String() + "]"
}

// sanitizeHelo keeps the client's EHLO name from breaking the Received
// field's syntax: it is client-chosen text.
func sanitizeHelo(helo string) string {
	const maxLen = 255
	if helo == "" {
		return "unknown"
	}
	if len(helo) > maxLen {
		helo = helo[:maxLen]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune(".-_:[]", r):
			return r
		}
		return '_'
	}, helo)
}

// normalizeAddress checks a recipient from RCPT TO and returns it with the
// domain lower-cased. SMTPUTF8 is not offered, so addresses are printable
// ASCII (RFC 5321 4.1.2); a local part is at most 64 octets (4.5.3.1.1).
func normalizeAddress(addr string) (string, bool) {
	for i := 0; i < len(addr); i++ {
		if addr[i] <= ' ' || addr[i] > '~' {
			return "", false
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at > 64 {
		return "", false
	}
	domain := strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
	if !validDomain(domain) && !message.IsAddressLiteral(domain) {
		return "", false
	}
	return addr[:at] + "@" + domain, true
}

// validDomain reports whether d (lower-case) is a syntactically valid
// domain name (RFC 5321 4.1.2, RFC 1035 2.3.4 lengths).
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
