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
func CheckFrom(header []byte, user string) (missing bool, err error) {
	h, rerr := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(terminated(header))))
	if rerr != nil {
		return false, &FromError{Reason: fmt.Sprintf("The message header could not be read; its From must be your own address %s", user)}
	}
	if !h.Has("From") {
		return true, nil
	}
	// Each From field on its own: RFC 5322 allows one, and a second one
	// must not hide behind the first.
	for _, v := range h.Values("From") {
		var one gomail.Header
		one.Set("From", v)
		list, err := one.AddressList("From")
		if err != nil {
			return false, &FromError{Reason: fmt.Sprintf("From header %q cannot be read as an address; it must be your own address %s", clip(v), user)}
		}
		if len(list) == 0 {
			return false, &FromError{Reason: fmt.Sprintf("From header must be your own address %s; it names no address", user)}
		}
		for _, a := range list {
			if !strings.EqualFold(a.Address, user) {
				return false, &FromError{Reason: fmt.Sprintf("From header must be your own address %s, not %s", user, clip(a.Address))}
			}
		}
	}
	return false, nil
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
