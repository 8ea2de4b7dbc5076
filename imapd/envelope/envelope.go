// Package envelope computes the IMAP ENVELOPE of a message from its header
// (RFC 9051 7.5.2), for storage to keep beside the message.
//
// Promises:
//   - Address groups are kept: "team: a@x, b@y;" becomes the group markers
//     of RFC 3501 7.4.2 around its members (Address.IsGroupStart and
//     IsGroupEnd), which wire.Encoder writes as (NIL NIL "team" NIL) ...
//     (NIL NIL NIL NIL). go-imap v2's imapserver.ExtractEnvelope flattened
//     them.
//   - One malformed address drops only itself, not the whole field.
//   - A source route (RFC 5322 4.4, "<@relay:user@host>") is kept as the
//     address's ADL (RFC 3501 7.4.2), written as the second field of the
//     address structure.
//   - A missing or empty Sender or Reply-To is the From list (RFC 3501
//     7.4.2).
//   - Parsing is linear in the length of the header; it never fails.
package envelope

import (
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// FromHeader returns the envelope of a message with header h.
func FromHeader(h textproto.Header) *Envelope {
	mh := mail.Header{Header: message.Header{Header: h}}
	date, _ := mh.Date()
	subject, _ := mh.Subject()
	inReplyTo, _ := mh.MsgIDList("In-Reply-To")
	messageID, _ := mh.MessageID()
	env := &Envelope{
		Date:      date,
		Subject:   subject,
		From:      Addresses(h.Get("From")),
		Sender:    Addresses(h.Get("Sender")),
		ReplyTo:   Addresses(h.Get("Reply-To")),
		To:        Addresses(h.Get("To")),
		Cc:        Addresses(h.Get("Cc")),
		Bcc:       Addresses(h.Get("Bcc")),
		InReplyTo: inReplyTo,
		MessageID: messageID,
	}
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	return env
}

// Addresses parses an address list header value (RFC 5322 3.4), groups
// included, into ENVELOPE addresses.
func Addresses(v string) []Address {
	var out []Address
	for _, seg := range segments(v) {
		if !seg.group {
			if a, ok := parseOne(seg.text); ok {
				out = append(out, a)
			}
			continue
		}
		out = append(out, Address{Mailbox: groupName(seg.name)})
		if members := strings.TrimSpace(seg.text); members != "" {
			for _, m := range splitTopLevel(members) {
				if a, ok := parseOne(m); ok {
					out = append(out, a)
				}
			}
		}
		out = append(out, Address{})
	}
	return out
}

// parseOne parses one address. Comments are dropped first (net/mail
// refuses some placements); the last one names an address that has no
// display name, as in the old "user@host (Full Name)" form.
func parseOne(text string) (Address, bool) {
	bare, comment := stripComments(text)
	bare, adl := cutRoute(bare)
	a, err := mail.ParseAddress(strings.TrimSpace(bare))
	if err != nil && comment != "" {
		// RFC 5322 3.4.1 allows comments and folding whitespace around
		// the "@" of an addr-spec ("<user (c)@ (c) host>"); with the
		// comments gone, the whitespace left there is dropped too.
		a, err = mail.ParseAddress(strings.TrimSpace(joinAt(bare)))
	}
	if err != nil {
		return Address{}, false
	}
	addr := toIMAP(a)
	addr.ADL = adl
	if addr.Name == "" {
		addr.Name = strings.TrimSpace(comment)
	}
	return addr, true
}

// cutRoute takes the obsolete source route out of an angle address (RFC
// 5322 4.4 obs-angle-addr, "<@relay.example,@b.example:user@host>"), which
// net/mail refuses, and returns it as IMAP's ADL ("@relay.example,@b.example",
// RFC 3501 7.4.2), without the whitespace and the empty elements the
// obsolete syntax allows. Comments are already gone.
func cutRoute(v string) (rest, adl string) {
	var s scanner
	for i := 0; i < len(v); i++ {
		if v[i] != '<' || s.inQuote || s.inAngle || s.escape || s.comment > 0 {
			s.structural(v[i])
			continue
		}
		inner := v[i+1:]
		colon := strings.IndexByte(inner, ':')
		end := strings.IndexByte(inner, '>')
		if colon < 0 || (end >= 0 && end < colon) || !strings.HasPrefix(strings.TrimLeft(inner, " \t,"), "@") {
			return v, ""
		}
		var route []string
		for _, d := range strings.Split(inner[:colon], ",") {
			if d = strings.Join(strings.Fields(d), ""); d != "" {
				route = append(route, d)
			}
		}
		return v[:i+1] + inner[colon+1:], strings.Join(route, ",")
	}
	return v, ""
}

// joinAt removes the whitespace on either side of each "@" outside quoted
// strings.
func joinAt(v string) string {
	b := make([]byte, 0, len(v))
	inQuote, escape := false, false
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case escape:
			escape = false
		case inQuote && ch == '\\':
			escape = true
		case ch == '"':
			inQuote = !inQuote
		case !inQuote && ch == '@':
			for len(b) > 0 && isFWS(b[len(b)-1]) {
				b = b[:len(b)-1]
			}
			b = append(b, '@')
			for i+1 < len(v) && isFWS(v[i+1]) {
				i++
			}
			continue
		}
		b = append(b, ch)
	}
	return string(b)
}

func isFWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// stripComments removes the comments outside quoted strings and returns
// the text of the last one.
func stripComments(v string) (bare, last string) {
	if !strings.Contains(v, "(") {
		return v, ""
	}
	var b, c strings.Builder
	inQuote, escape, depth := false, false, 0
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case escape:
			escape = false
		case ch == '\\' && (inQuote || depth > 0):
			escape = true
			if depth > 0 {
				continue
			}
		case depth == 0 && ch == '"':
			inQuote = !inQuote
		case !inQuote && ch == '(':
			if depth == 0 {
				c.Reset()
				b.WriteByte(' ')
			} else {
				c.WriteByte(ch)
			}
			depth++
			continue
		case !inQuote && depth > 0 && ch == ')':
			depth--
			if depth > 0 {
				c.WriteByte(ch)
			} else {
				last = c.String()
			}
			continue
		}
		if depth > 0 {
			c.WriteByte(ch)
		} else {
			b.WriteByte(ch)
		}
	}
	return b.String(), last
}

func toIMAP(a *mail.Address) Address {
	at := strings.LastIndexByte(a.Address, '@')
	if at < 0 {
		return Address{Name: a.Name, Mailbox: a.Address, Host: "missing-domain"}
	}
	return Address{Name: a.Name, Mailbox: a.Address[:at], Host: a.Address[at+1:]}
}

// groupName decodes a group's display name (a phrase: atoms, quoted
// strings, encoded words).
func groupName(phrase string) string {
	phrase = strings.TrimSpace(phrase)
	if a, err := mail.ParseAddress(phrase + " <group@invalid>"); err == nil && a.Name != "" {
		return a.Name
	}
	return strings.Trim(phrase, `"`)
}

// segment is one top-level element of an address list: an address, or a
// group with its display name and its members' text.
type segment struct {
	group bool
	name  string
	text  string
}

// scanner tracks quoting while walking an address list, so that
// separators inside quoted strings, comments and angle brackets are not
// taken for structure.
type scanner struct {
	inQuote, inAngle, escape bool
	comment                  int
}

// structural reports whether byte c, the next one, is outside quotes,
// comments and angle brackets, updating the state.
func (s *scanner) structural(c byte) bool {
	switch {
	case s.escape:
		s.escape = false
		return false
	case s.inQuote:
		switch c {
		case '\\':
			s.escape = true
		case '"':
			s.inQuote = false
		}
		return false
	case s.comment > 0:
		switch c {
		case '\\':
			s.escape = true
		case '(':
			s.comment++
		case ')':
			s.comment--
		}
		return false
	case s.inAngle:
		if c == '>' {
			s.inAngle = false
		}
		return false
	}
	switch c {
	case '"':
		s.inQuote = true
		return false
	case '(':
		s.comment++
		return false
	case '<':
		s.inAngle = true
		return false
	}
	return true
}

func segments(v string) []segment {
	var out []segment
	var s scanner
	start, inGroup := 0, false
	var name string
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !s.structural(c) {
			continue
		}
		switch {
		case c == ':' && !inGroup:
			name, inGroup, start = v[start:i], true, i+1
		case c == ';' && inGroup:
			out = append(out, segment{group: true, name: name, text: v[start:i]})
			inGroup, start = false, i+1
		case c == ',' && !inGroup:
			if t := strings.TrimSpace(v[start:i]); t != "" {
				out = append(out, segment{text: t})
			}
			start = i + 1
		}
	}
	if inGroup {
		out = append(out, segment{group: true, name: name, text: v[start:]}) // no closing ";"
	} else if t := strings.TrimSpace(v[start:]); t != "" {
		out = append(out, segment{text: t})
	}
	return out
}

// splitTopLevel splits a group's members at the commas outside quotes,
// comments and angle brackets.
func splitTopLevel(v string) []string {
	var out []string
	var s scanner
	start := 0
	for i := 0; i < len(v); i++ {
		if s.structural(v[i]) && v[i] == ',' {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}
