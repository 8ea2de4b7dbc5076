package envelope

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"

	"github.com/pochta/pochta/imapd/wire"
)

func header(t *testing.T, s string) textproto.Header {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(s + "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func encoded(env *imap.Envelope) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	e := wire.NewEncoder(w)
	e.Envelope(env)
	e.Flush()
	return b.String()
}

// imaptest's fetch-envelope case: groups, an empty group, real names.
func TestGroupsAreKept(t *testing.T) {
	env := FromHeader(header(t, "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"+
		"From: Real Name <user@domain>\r\n"+
		"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"+
		"Cc: group:;\r\n"))
	got := encoded(env)
	want := `("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) ` +
		`(("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) ` +
		`((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)` +
		`(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) ` +
		`((NIL NIL "group" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a@x.org, "Doe, John" <j@y.org>`, `[{ a x.org} {Doe, John j y.org}]`},
		{`(comment) c@z.org (Carl)`, `[{Carl c z.org}]`},
		{`=?utf-8?q?J=C3=BCrgen?= <j@x.de>`, `[{Jürgen j x.de}]`},
		{`"Team: A; B" <t@x.org>`, `[{Team: A; B t x.org}]`},
		{`"My Group": m@x.org, <n@y.org>;`, `[{ My Group } { m x.org} { n y.org} {  }]`},
		{`undisclosed-recipients:;`, `[{ undisclosed-recipients } {  }]`},
		{`not an address, ok@x.org`, `[{ ok x.org}]`},
		{`open: a@x.org`, `[{ open } { a x.org} {  }]`},
		{``, `[]`},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(Addresses(tt.in)); got != tt.want {
			t.Errorf("Addresses(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// RFC 3501 7.4.2: Sender and Reply-To default to From.
func TestSenderAndReplyToDefaultToFrom(t *testing.T) {
	env := FromHeader(header(t, "From: a@x.org\r\nReply-To: r@x.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <id@x>\r\nIn-Reply-To: <p@x> <q@x>\r\n"))
	if len(env.Sender) != 1 || env.Sender[0].Addr() != "a@x.org" {
		t.Errorf("Sender = %v, want From", env.Sender)
	}
	if len(env.ReplyTo) != 1 || env.ReplyTo[0].Addr() != "r@x.org" {
		t.Errorf("Reply-To = %v", env.ReplyTo)
	}
	if env.Subject != "café" || env.MessageID != "id@x" || fmt.Sprint(env.InReplyTo) != "[p@x q@x]" {
		t.Errorf("envelope = %+v", env)
	}
}

// Linear in the length: a long list of nested comments and quotes parses
// at once.
func TestLongListIsLinear(t *testing.T) {
	in := strings.Repeat(`"x" <a@b.c>, (c) d@e.f, g: h@i.j;, `, 20000)
	if got := len(Addresses(in)); got != 20000*5 {
		t.Errorf("got %d addresses, want %d", got, 20000*5)
	}
}

// RFC 5322 3.4.1 allows comments and whitespace around the "@" of an
// addr-spec (imaptest search-addresses).
func TestCommentsAroundAt(t *testing.T) {
	got := Addresses("<user-from (comment)@ (comment) domain.org>")
	want := []imap.Address{{Name: "comment", Mailbox: "user-from", Host: "domain.org"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Addresses = %+v, want %+v", got, want)
	}
}
