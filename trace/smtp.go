package trace

import (
	"fmt"
	"strconv"
	"strings"
)

// masked replaces a credential.
const masked = "***"

// smtpParser masks SMTP lines: AUTH's initial response and continuation
// lines (RFC 4954), and DATA (RFC 5321 4.1.1.4) and BDAT (RFC 3030) contents.
type smtpParser struct {
	// auth is set from an AUTH command until its final reply: every client
	// line meanwhile is a SASL response. A final reply to an earlier
	// pipelined command (EHLO's 250) does not end it; only AUTH's own
	// outcomes (235, 4xx, 5xx) do, so a doubt masks rather than shows.
	auth bool
	// dataSent is set from a DATA command until its reply; body is set
	// from 354 until the lone dot. Client lines in either are message text:
	// a client that sends the message without waiting for 354 must not
	// get it logged.
	dataSent, body bool
	bodyBytes      int64
}

func (p *smtpParser) line(s *Session, dir string, l line) int64 {
	emit := s.emit
	if dir == dirServer {
		p.serverLine(l, emit)
		return noRaw
	}
	if p.body || p.dataSent {
		if !l.cut && l.text == "." {
			p.endBody(emit)
			emit(dirClient, ".")
			return noRaw
		}
		p.bodyBytes += l.size
		return noRaw
	}
	if p.auth {
		emit(dirClient, masked)
		return noRaw
	}
	verb, args, _ := strings.Cut(l.text, " ")
	switch strings.ToUpper(verb) {
	case "AUTH":
		mech, ir, _ := strings.Cut(args, " ")
		text := strings.TrimSpace(verb + " " + mech)
		if ir != "" {
			text += " " + masked
		}
		p.auth = true
		emit(dirClient, text)
		return noRaw
	case "DATA":
		p.dataSent = true
	case "BDAT":
		size, _, _ := strings.Cut(args, " ")
		emit(dirClient, l.shown(l.text))
		if n, err := strconv.ParseInt(size, 10, 64); err == nil && n >= 0 {
			return n
		}
		return noRaw
	}
	emit(dirClient, l.shown(l.text))
	return noRaw
}

func (p *smtpParser) serverLine(l line, emit func(dir, text string)) {
	code := l.text[:min(3, len(l.text))]
	final := len(l.text) == 3 || len(l.text) > 3 && l.text[3] == ' '
	failed := final && len(code) == 3 && (code[0] == '4' || code[0] == '5')
	switch {
	case code == "354":
		p.dataSent, p.body = false, true
	case failed && p.dataSent:
		// DATA refused (or a pipelined command before it): any text the
		// client sent meanwhile was not a message after all, but it is
		// still not shown.
		p.dataSent = false
		p.endBody(emit)
	}
	if p.auth && (failed || final && code == "235") {
		p.auth = false
	}
	emit(dirServer, l.shown(l.text))
}

// endBody writes the one line that stands for a message's text.
func (p *smtpParser) endBody(emit func(dir, text string)) {
	if p.body || p.bodyBytes > 0 {
		emit(dirClient, bodyNote(p.bodyBytes))
	}
	p.body, p.bodyBytes = false, 0
}

func (p *smtpParser) raw(s *Session, dir string, n int64) {
	// Only BDAT announces raw bytes in SMTP.
	s.emit(dir, bodyNote(n))
}

func bodyNote(n int64) string { return fmt.Sprintf("<message body, %d bytes>", n) }
