// Package mimetest builds hostile MIME messages for the tests of several
// packages.
package mimetest

import (
	"fmt"
	"strings"
)

// Nested returns a message whose one text part sits inside depth nested
// multiparts (depth 0: a plain text message). CRLF line endings.
func Nested(depth int) []byte {
	var b strings.Builder
	b.WriteString("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninnermost\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

// Wide returns a multipart message of children empty parts side by side:
// children+1 MIME parts in all, counting the message itself. CRLF line
// endings.
func Wide(children int) []byte {
	var b strings.Builder
	b.WriteString("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: wide\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"w\"\r\n\r\n")
	for range children {
		b.WriteString("--w\r\n\r\n")
	}
	b.WriteString("--w--\r\n")
	return []byte(b.String())
}
