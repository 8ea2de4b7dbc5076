package wire

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// mutf7 is base64 with "," for "/" and no padding (RFC 3501 5.1.3).
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// ErrMailboxName is returned by DecodeMailbox for a name that is not valid
// modified UTF-7; the client gets BAD, not a server error.
var ErrMailboxName = errors.New("mailbox name is not valid modified UTF-7")

// EncodeMailbox encodes a UTF-8 mailbox name in modified UTF-7.
func EncodeMailbox(name string) string {
	var b strings.Builder
	var run []rune // characters waiting to be base64-encoded
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		raw := make([]byte, 2*len(u))
		for i, c := range u {
			raw[2*i], raw[2*i+1] = byte(c>>8), byte(c)
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range name {
		if r >= 0x20 && r <= 0x7e {
			flush()
			b.WriteRune(r)
			if r == '&' {
				b.WriteByte('-')
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}

// DecodeMailbox decodes a modified UTF-7 mailbox name to UTF-8. It refuses
// what an encoder would never produce: raw 8-bit or control characters, an
// unterminated or empty shift, printable ASCII in a shift, bad UTF-16.
func DecodeMailbox(name string) (string, error) {
	if !strings.ContainsAny(name, "&") {
		for i := 0; i < len(name); i++ {
			if name[i] < 0x20 || name[i] > 0x7e {
				return "", ErrMailboxName
			}
		}
		return name, nil
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c > 0x7e {
			return "", ErrMailboxName
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(name[i+1:], '-')
		if end < 0 {
			return "", ErrMailboxName
		}
		enc := name[i+1 : i+1+end]
		i += end + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", ErrMailboxName
		}
		u := make([]uint16, len(raw)/2)
		for j := range u {
			u[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for _, r := range utf16.Decode(u) {
			if r == utf8.RuneError || (r >= 0x20 && r <= 0x7e) {
				return "", ErrMailboxName
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
