package message

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// FromError says why a From field is not acceptable from a user; its text
// is meant for the person who sent the message.
type FromError struct {
	Reason string
}

func (e *FromError) Error() string { return e.Reason }

// CheckFrom checks the From field of header (the raw header fields of a
// message, up to the empty line or not) against user, the logged-in
// user's address. Every address of every From field must equal user,
// compared case-insensitively as a whole (pochta's addresses are
// lower-case; a user writing Alice@Example.COM means themselves). Comments,
// display names, groups and RFC 2047 encoded words are read with
// go-message's address parser.
//
// missing is true when the header has no From field at all: the caller
// adds one (RFC 6409 8.1 lets the submission server do that). Otherwise a
// non-nil error is a *FromError.
//
// A Sender field, which clients show as the one who actually sent ("bob
// on behalf of alice"), is held to the same rule. So is a display name
// that is itself an address ("bob@example.test" <alice@example.test>,
// plainly or as an encoded word): most clients show only the name, so it
// must not name anyone but user.
func CheckFrom(header []byte, user string) (missing bool, err error) {
	h, rerr := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(terminated(header))))
	if rerr != nil {
		return false, &FromError{Reason: fmt.Sprintf("The message header could not be read; its From must be your own address %s", user)}
	}
	for _, field := range []string{"Sender", "From"} {
		if err := checkOwnAddresses(h, field, user); err != nil {
			return false, err
		}
	}
	return !h.Has("From"), nil
}

// checkOwnAddresses checks every field named field on its own: RFC 5322
// allows one, and a second one must not hide behind the first.
func checkOwnAddresses(h textproto.Header, field, user string) error {
	for _, v := range h.Values(field) {
		var one gomail.Header
		one.Set(field, v)
		list, err := one.AddressList(field)
		if err != nil {
			return &FromError{Reason: fmt.Sprintf("%s header %q cannot be read as an address; it must be your own address %s", field, clip(v), user)}
		}
		if len(list) == 0 {
			return &FromError{Reason: fmt.Sprintf("%s header must be your own address %s; it names no address", field, user)}
		}
		for _, a := range list {
			if !strings.EqualFold(a.Address, user) {
				return &FromError{Reason: fmt.Sprintf("%s header must be your own address %s, not %s", field, user, clip(a.Address))}
			}
			if other := addressInName(a.Name, user); other != "" {
				return &FromError{Reason: fmt.Sprintf("%s header must be your own address %s; its name %q looks like another address", field, user, clip(other))}
			}
		}
	}
	return nil
}

// addressInName returns the first word of a display name (already decoded
// from encoded words) that reads as an address other than user, or "".
func addressInName(name, user string) string {
	for _, word := range strings.FieldsFunc(name, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '"' || r == '<' || r == '>' || r == '(' || r == ')' || r == ',' || r == ';' || r == '[' || r == ']'
	}) {
		local, domain, ok := strings.Cut(word, "@")
		if !ok || local == "" || domain == "" {
			continue
		}
		if !strings.EqualFold(strings.Trim(word, ".'`"), user) {
			return word
		}
	}
	return ""
}

// terminated returns header ending in an empty line, as a header parser
// expects.
func terminated(header []byte) []byte {
	if len(header) == 0 || bytes.HasSuffix(header, []byte("\r\n")) {
		return append(header[:len(header):len(header)], "\r\n"...)
	}
	return append(header[:len(header):len(header)], "\r\n\r\n"...)
}

// clip shortens client text quoted back in a reply.
func clip(s string) string {
	const max = 100
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
