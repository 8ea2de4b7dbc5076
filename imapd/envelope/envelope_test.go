package envelope_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/pochta/pochta/imapd/envelope"
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

func encoded(env *envelope.Envelope) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	e := wire.NewEncoder(w)
	e.Envelope(env)
	e.Flush()
	return b.String()
}

// imaptest's fetch-envelope case: groups, an empty group, real names.
func TestGroupsAreKept(t *testing.T) {
	env := envelope.FromHeader(header(t, "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n"+
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

// show formats addresses as {name mailbox host}, with the route first
// when there is one: {@route: name mailbox host}.
func show(l []envelope.Address) string {
	parts := make([]string, len(l))
	for i, a := range l {
		route := ""
		if a.ADL != "" {
			route = a.ADL + ": "
		}
		parts[i] = fmt.Sprintf("{%s%s %s %s}", route, a.Name, a.Mailbox, a.Host)
	}
	return "[" + strings.Join(parts, " ") + "]"
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
		// RFC 5322 4.4 obs-route, kept as the ADL (RFC 3501 7.4.2).
		{`<@route:user@domain>`, `[{@route:  user domain}]`},
		{`Real <@a.example, @b.example:u@h.example>`, `[{@a.example,@b.example: Real u h.example}]`},
		{`"<@not:a route>" <x@y.org>`, `[{<@not:a route> x y.org}]`},
		{`g: <@r.example:m@x.org>;`, `[{ g } {@r.example:  m x.org} {  }]`},
	}
	for _, tt := range tests {
		if got := show(envelope.Addresses(tt.in)); got != tt.want {
			t.Errorf("envelope.Addresses(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// RFC 3501 7.4.2: Sender and Reply-To default to From.
func TestSenderAndReplyToDefaultToFrom(t *testing.T) {
	env := envelope.FromHeader(header(t, "From: a@x.org\r\nReply-To: r@x.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <id@x>\r\nIn-Reply-To: <p@x> <q@x>\r\n"))
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
	if got := len(envelope.Addresses(in)); got != 20000*5 {
		t.Errorf("got %d addresses, want %d", got, 20000*5)
	}
}

// RFC 5322 3.4.1 allows comments and whitespace around the "@" of an
// addr-spec (imaptest search-addresses).
func TestCommentsAroundAt(t *testing.T) {
	got := envelope.Addresses("<user-from (comment)@ (comment) domain.org>")
	want := []envelope.Address{{Name: "comment", Mailbox: "user-from", Host: "domain.org"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Addresses = %+v, want %+v", got, want)
	}
}

// imaptest fetch-envelope, message 6: a source route is the address's adl.
func TestSourceRouteInEnvelope(t *testing.T) {
	env := envelope.FromHeader(header(t, "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: <@route:user@domain>\r\n"))
	got := encoded(env)
	want := `("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain")) ` +
		`((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) NIL NIL NIL NIL NIL)`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
