package trace

import (
	"fmt"
	"strconv"
	"strings"
)

// imapParser masks IMAP lines: the password of LOGIN (RFC 9051 6.2.3), the
// initial response (RFC 4959) and continuation lines of AUTHENTICATE
// (RFC 9051 6.2.2), and literals (RFC 9051 4.3, RFC 7888), which carry
// messages in APPEND and FETCH.
type imapParser struct {
	// The client's current command.
	inCmd   bool   // it continues after a literal
	tag     string // its tag
	cmd     string // its name, upper-case
	arg     int    // LOGIN: index of its next argument
	litArg  int    // LOGIN: the argument the pending literal is, or -1
	syncLit bool   // the pending literal waits for the server's "+"
	prefix  string // stands for the literal the next client line continues
	// authTag is the tag of an AUTHENTICATE until its tagged reply: every
	// client line meanwhile is a SASL response.
	authTag string

	// The server's current response.
	sInResp bool   // it continues after a literal
	sPrefix string // stands for the literal the next server line continues
}

func (p *imapParser) line(s *Session, dir string, l line) int64 {
	if dir == dirServer {
		return p.serverLine(s, l)
	}
	n, sync, lit := literalAt(l.end)
	var text string
	switch {
	case p.inCmd:
		text = p.prefix + p.continued(l)
		p.prefix = ""
	case p.authTag != "":
		text = masked
	default:
		text = p.command(l)
	}
	p.inCmd, p.syncLit = lit, sync
	s.emit(dirClient, text)
	if lit {
		return n
	}
	return noRaw
}

// command masks the first line of a command.
func (p *imapParser) command(l line) string {
	tag, rest, _ := strings.Cut(l.text, " ")
	name, args, hasArgs := strings.Cut(rest, " ")
	p.tag, p.cmd, p.arg, p.litArg = tag, strings.ToUpper(name), 0, -1
	switch p.cmd {
	case "LOGIN":
		if !hasArgs {
			return l.text
		}
		return tag + " " + name + " " + p.loginArgs(args)
	case "AUTHENTICATE":
		p.authTag = tag
		mech, ir, _ := strings.Cut(args, " ")
		text := strings.TrimSpace(tag + " " + name + " " + mech)
		if ir != "" {
			text += " " + masked
		}
		return text
	}
	return l.shown(l.text)
}

// continued masks a line that continues a command after a literal.
func (p *imapParser) continued(l line) string {
	if p.cmd == "LOGIN" {
		p.litArg = -1
		return p.loginArgs(l.text)
	}
	return l.shown(l.text)
}

// loginArgs shows LOGIN's first argument (the user name) and masks every
// later one, whether atom, quoted string or literal marker.
func (p *imapParser) loginArgs(seg string) string {
	var b strings.Builder
	for i := 0; i < len(seg); {
		if seg[i] == ' ' {
			b.WriteByte(' ')
			i++
			continue
		}
		j := tokenEnd(seg, i)
		tok := seg[i:j]
		if p.arg == 0 {
			b.WriteString(tok)
		} else {
			b.WriteString(masked)
		}
		if tok[0] == '{' || tok[0] == '~' {
			p.litArg = p.arg
		}
		p.arg++
		i = j
	}
	return b.String()
}

// tokenEnd returns where the argument starting at seg[i] ends: after the
// closing quote of a quoted string, at the end of seg for a literal marker
// (which ends the line), else at the next space.
func tokenEnd(seg string, i int) int {
	switch seg[i] {
	case '"':
		for j := i + 1; j < len(seg); j++ {
			switch seg[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return len(seg)
	case '{', '~':
		return len(seg)
	}
	if j := strings.IndexByte(seg[i:], ' '); j >= 0 {
		return i + j
	}
	return len(seg)
}

func (p *imapParser) serverLine(s *Session, l line) int64 {
	if !p.sInResp {
		tagged := p.tag != "" && strings.HasPrefix(l.text, p.tag+" ")
		if p.authTag != "" && strings.HasPrefix(l.text, p.authTag+" ") {
			p.authTag = ""
		}
		// A synchronizing literal the server refused instead of asking
		// for it: the client will not send it.
		if p.inCmd && p.syncLit && s.client.skip > 0 && s.client.skip == s.client.rawLen &&
			(tagged || strings.HasPrefix(l.text, "* BYE")) {
			s.client.skip, p.inCmd, p.prefix = 0, false, ""
		}
	}
	text := p.sPrefix + l.shown(l.text)
	p.sPrefix = ""
	n, _, lit := literalAt(l.end)
	p.sInResp = lit
	s.emit(dirServer, text)
	if lit {
		return n
	}
	return noRaw
}

func (p *imapParser) raw(_ *Session, dir string, n int64) {
	if dir == dirServer {
		p.sPrefix = literalNote(n)
		return
	}
	switch {
	case p.cmd == "APPEND":
		p.prefix = bodyNote(n)
	case p.cmd == "LOGIN" && p.litArg != 0:
		p.prefix = masked
	default:
		p.prefix = literalNote(n)
	}
}

func literalNote(n int64) string { return fmt.Sprintf("<literal, %d bytes>", n) }

// literalAt parses the literal marker that ends a line: "{N}" (the client
// waits for "+"), "{N+}" (RFC 7888 LITERAL+) or "~{N}" (RFC 3516 BINARY).
func literalAt(end string) (n int64, sync, ok bool) {
	if !strings.HasSuffix(end, "}") {
		return 0, false, false
	}
	open := strings.LastIndexByte(end, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := end[open+1 : len(end)-1]
	sync = true
	if d, found := strings.CutSuffix(digits, "+"); found {
		digits, sync = d, false
	}
	if digits == "" || digits[0] == '+' || digits[0] == '-' {
		return 0, false, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false, false
	}
	return n, sync, true
}
