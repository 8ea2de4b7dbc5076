package queue

// The relay client: one SMTP transaction per attempt with go-smtp's client,
// and the one place where the relay's answers are classified.
//
// go-smtp's client reads the greeting itself and offers STARTTLS only
// inside NewClientStartTLS, before our EHLO name can be set and with the
// handshake deferred to the next command. To tell "relay unreachable" from
// "settings problem" from "temporary failure" precisely, the greeting and
// STARTTLS are done here on the raw connection, the TLS handshake is made
// explicitly, and go-smtp takes over from EHLO on, fed a replayed greeting.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

// fault says that an attempt did not reach the point where the message
// could be judged: such an attempt is not counted.
type fault int

const (
	faultNone        fault = iota
	faultUnreachable       // the relay did not answer: relay down
	faultSettings          // login, TLS or greeting refused: settings problem
	faultAborted           // the queue is stopping
)

// rcptKind is the outcome for one recipient.
type rcptKind int

const (
	rcptSent rcptKind = iota + 1
	rcptTemporary
	rcptPermanent
)

// failure is a classified error: a fault, or a temporary or permanent
// failure for every recipient of the transaction.
type failure struct {
	fault  fault
	kind   rcptKind // when fault is faultNone
	text   string   // the relay's reply verbatim, or what went wrong
	status string   // RFC 3463 status
}

// rcptResult is one recipient's outcome.
type rcptResult struct {
	kind   rcptKind
	reply  string
	status string
}

// outcome is the result of one attempt.
type outcome struct {
	fault fault  // not faultNone: nothing was judged, rcpts is empty
	text  string // the failure of the whole attempt, if any
	rcpts map[string]rcptResult
}

// maxReplyLen bounds a stored reply; go-smtp bounds a line at 2000 bytes,
// but a reply may have many lines.
const maxReplyLen = 1000

// relay talks to the upstream server.
type relay struct {
	addr, mode                               string
	username, password                       string
	hostname                                 string
	tlsConfig                                *tls.Config
	dialTimeout, commandTimeout, dataTimeout time.Duration
}

// relaySession is one connection, past the greeting, TLS and AUTH.
type relaySession struct {
	raw  net.Conn
	conn net.Conn // raw, or TLS over raw
	c    *smtp.Client
	stop func() bool
}

func (s *relaySession) close() {
	s.stop()
	if s.c != nil {
		s.c.Close()
	}
	s.raw.Close()
}

// greetedConn replays the greeting we already read to go-smtp's client.
type greetedConn struct {
	net.Conn
	r io.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) { return g.r.Read(p) }

const replayedGreeting = "220 greeting already read\r\n"

func (r *relay) tlsClientConfig() *tls.Config {
	cfg := r.tlsConfig
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(r.addr)
		if err != nil {
			host = r.addr
		}
		cfg.ServerName = host
	}
	return cfg
}

// handshake runs the TLS handshake now, so that its failure is told apart
// from the commands after it.
func (r *relay) handshake(ctx context.Context, raw net.Conn) (net.Conn, *failure) {
	tc := tls.Client(raw, r.tlsClientConfig())
	hctx, cancel := context.WithTimeout(ctx, r.commandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, &failure{fault: faultSettings, text: fmt.Sprintf("TLS handshake with the relay %s failed: %v", r.addr, err)}
	}
	return tc, nil
}

// connect opens a session ready for MAIL FROM.
func (r *relay) connect(ctx context.Context) (*relaySession, *failure) {
	d := net.Dialer{Timeout: r.dialTimeout}
	raw, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return nil, &failure{fault: faultUnreachable, text: fmt.Sprintf("cannot reach the relay %s: %v", r.addr, err)}
	}
	s := &relaySession{raw: raw, conn: raw}
	// Cancelling ctx (shutdown) unblocks any read or write at once.
	s.stop = context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(f *failure) (*relaySession, *failure) {
		s.close()
		return nil, f
	}
	if r.mode == TLSImplicit {
		tc, f := r.handshake(ctx, raw)
		if f != nil {
			return fail(f)
		}
		s.conn = tc
	}
	tp := textproto.NewConn(s.conn)
	s.conn.SetDeadline(time.Now().Add(r.commandTimeout))
	_, _, err = tp.ReadResponse(220)
	s.conn.SetDeadline(time.Time{})
	if err != nil {
		return fail(r.classifyGreeting(err))
	}
	var rest io.Reader = tp.R
	if r.mode == TLSStartTLS {
		if f := r.startTLS(tp, s.conn); f != nil {
			return fail(f)
		}
		tc, f := r.handshake(ctx, raw)
		if f != nil {
			return fail(f)
		}
		s.conn, rest = tc, tc
	}
	c := smtp.NewClient(&greetedConn{Conn: s.conn, r: io.MultiReader(strings.NewReader(replayedGreeting), rest)})
	c.CommandTimeout = r.commandTimeout
	c.SubmissionTimeout = r.dataTimeout
	s.c = c
	if err := c.Hello(r.hostname); err != nil {
		f := classify("EHLO", err)
		f.kind = rcptTemporary // a refused EHLO says nothing about the message
		return fail(f)
	}
	if r.username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fail(&failure{fault: faultSettings, text: fmt.Sprintf("the relay %s does not offer AUTH, but relay_username is set (does it need relay_tls = starttls?)", r.addr)})
		}
		if err := c.Auth(sasl.NewPlainClient("", r.username, r.password)); err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.Code >= 500 {
				text, _ := smtpReply(se)
				return fail(&failure{fault: faultSettings, text: fmt.Sprintf("the relay %s refused our login as %s: %s", r.addr, r.username, text)})
			}
			return fail(classify("AUTH", err))
		}
	}
	return s, nil
}

// classifyGreeting: a relay that refuses service (4xx) or closes at once
// is down; one that refuses us (5xx, often an address block) is a settings
// problem; garbage or silence is a temporary failure of this attempt.
func (r *relay) classifyGreeting(err error) *failure {
	var te *textproto.Error
	var pe textproto.ProtocolError
	switch {
	case errors.As(err, &te) && te.Code >= 400 && te.Code < 500:
		return &failure{fault: faultUnreachable, text: fmt.Sprintf("the relay %s is not accepting mail: %d %s", r.addr, te.Code, oneLine(te.Msg))}
	case errors.As(err, &te) && te.Code >= 500:
		return &failure{fault: faultSettings, text: fmt.Sprintf("the relay %s refused the connection: %d %s", r.addr, te.Code, oneLine(te.Msg))}
	case errors.As(err, &pe), errors.As(err, &te):
		return &failure{kind: rcptTemporary, text: fmt.Sprintf("the relay %s did not greet in SMTP: %v", r.addr, err), status: "4.5.0"}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &failure{kind: rcptTemporary, text: fmt.Sprintf("the relay %s did not greet within %s", r.addr, r.commandTimeout), status: "4.4.2"}
	}
	return &failure{fault: faultUnreachable, text: fmt.Sprintf("the relay %s closed the connection before greeting: %v", r.addr, err)}
}

// startTLS says EHLO and STARTTLS on the plain connection (RFC 3207).
func (r *relay) startTLS(tp *textproto.Conn, conn net.Conn) *failure {
	cmd := func(expect int, format string, args ...any) (string, error) {
		conn.SetDeadline(time.Now().Add(r.commandTimeout))
		defer conn.SetDeadline(time.Time{})
		id, err := tp.Cmd(format, args...)
		if err != nil {
			return "", err
		}
		tp.StartResponse(id)
		defer tp.EndResponse(id)
		_, msg, err := tp.ReadResponse(expect)
		return msg, err
	}
	msg, err := cmd(250, "EHLO %s", r.hostname)
	if err != nil {
		return &failure{kind: rcptTemporary, text: fmt.Sprintf("EHLO: %v", err), status: "4.5.0"}
	}
	offered := false
	for _, line := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(line), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return &failure{fault: faultSettings, text: fmt.Sprintf("the relay %s does not offer STARTTLS (relay_tls = starttls)", r.addr)}
	}
	if _, err := cmd(220, "STARTTLS"); err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return &failure{fault: faultSettings, text: fmt.Sprintf("the relay %s refused STARTTLS: %d %s", r.addr, te.Code, oneLine(te.Msg))}
		}
		return &failure{kind: rcptTemporary, text: fmt.Sprintf("STARTTLS: %v", err), status: "4.4.2"}
	}
	// RFC 3207 5: nothing the server sent before the handshake may be
	// used; a server that sent something anyway is not to be trusted.
	if tp.R.Buffered() > 0 {
		return &failure{fault: faultSettings, text: fmt.Sprintf("the relay %s sent data before the TLS handshake", r.addr)}
	}
	return nil
}

// probe checks that the relay answers completely: connect, TLS, AUTH,
// QUIT. nil means usable.
func (r *relay) probe(ctx context.Context) *failure {
	s, f := r.connect(ctx)
	if f != nil {
		return f
	}
	defer s.close()
	_ = s.c.Quit() // it answered; how it says goodbye does not matter
	return nil
}

// send runs one transaction for rcpts.
// relayMessage is the message an attempt sends: its size, for MAIL's
// SIZE parameter, and how to write it (streamed from the store).
type relayMessage struct {
	size    int64
	writeTo func(w io.Writer) (int64, error)
}

func (r *relay) send(ctx context.Context, from string, rcpts []string, msg relayMessage) outcome {
	out := outcome{rcpts: make(map[string]rcptResult, len(rcpts))}
	setAll := func(list []string, f *failure) {
		for _, a := range list {
			out.rcpts[a] = rcptResult{kind: f.kind, reply: f.text, status: f.status}
		}
		out.text = f.text
	}
	// Checked when queued; checked again because a stored entry is input
	// too. go-smtp refuses CR and LF as well.
	var valid []string
	for _, a := range rcpts {
		if storage.RelayAddressOK(a, false) {
			valid = append(valid, a)
		} else {
			out.rcpts[a] = rcptResult{kind: rcptPermanent, reply: fmt.Sprintf("invalid recipient address %q", a), status: "5.1.3"}
		}
	}
	if !storage.RelayAddressOK(from, true) {
		setAll(valid, &failure{kind: rcptPermanent, text: fmt.Sprintf("invalid sender address %q", from), status: "5.1.7"})
		return out
	}
	if len(valid) == 0 {
		return out
	}
	aborted := func() bool {
		if ctx.Err() != nil {
			out = outcome{fault: faultAborted, text: "the queue stopped during the attempt"}
			return true
		}
		return false
	}

	s, f := r.connect(ctx)
	if f != nil {
		if aborted() {
			return out
		}
		if f.fault != faultNone {
			return outcome{fault: f.fault, text: f.text}
		}
		setAll(valid, f)
		return out
	}
	defer s.close()

	opts := &smtp.MailOptions{Size: msg.size}
	if !isASCII(from) || !allASCII(valid) {
		// RFC 6531: internationalised addresses need SMTPUTF8.
		if ok, _ := s.c.Extension("SMTPUTF8"); !ok {
			setAll(valid, &failure{kind: rcptPermanent, text: "the relay does not support SMTPUTF8, which these addresses need", status: "5.6.7"})
			return out
		}
		opts.UTF8 = true
	}
	// Addresses are kept as go-smtp parsed them, local part unquoted;
	// on the wire a local part like "x@y" must be quoted again.
	if err := s.c.Mail(message.QuoteLocalPart(from), opts); err != nil {
		if aborted() {
			return out
		}
		setAll(valid, classify("MAIL FROM", err))
		return out
	}
	var accepted []string
	for i, a := range valid {
		err := s.c.Rcpt(message.QuoteLocalPart(a), nil)
		if err == nil {
			accepted = append(accepted, a)
			continue
		}
		if aborted() {
			return out
		}
		f := classify("RCPT TO", err)
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// The connection is gone: nobody gets further in this attempt.
			setAll(append(accepted, valid[i:]...), f)
			return out
		}
		out.rcpts[a] = rcptResult{kind: f.kind, reply: f.text, status: f.status}
		out.text = f.text
	}
	if len(accepted) == 0 {
		_ = s.c.Quit()
		return out
	}
	w, err := s.c.Data()
	if err != nil {
		if aborted() {
			return out
		}
		setAll(accepted, classify("DATA", err))
		return out
	}
	// go-smtp sets no deadline while the message is written.
	s.conn.SetDeadline(time.Now().Add(r.dataTimeout))
	// Returning before CloseWithResponse closes the connection without
	// the final dot: the relay drops what it got of the message.
	rw := &relayWriter{w: w}
	if _, err := msg.writeTo(rw); err != nil {
		switch {
		case aborted():
		case rw.err == nil && errors.Is(err, storage.ErrNotFound):
			out = outcome{fault: faultAborted, text: "the entry was deleted during its attempt"}
		case rw.err == nil:
			setAll(accepted, &failure{kind: rcptTemporary, text: fmt.Sprintf("reading the queued message failed: %v", err), status: "4.3.0"})
		default:
			setAll(accepted, &failure{kind: rcptTemporary, text: fmt.Sprintf("connection to the relay lost while sending the message: %v", rw.err), status: "4.4.2"})
		}
		return out
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		if aborted() {
			return out
		}
		setAll(accepted, classify("end of DATA", err))
		return out
	}
	reply := sanitize("250 " + resp.StatusText)
	for _, a := range accepted {
		out.rcpts[a] = rcptResult{kind: rcptSent, reply: reply, status: "2.0.0"}
	}
	_ = s.c.Quit()
	return out
}

// relayWriter remembers whether a failed write of the message was the
// relay's side (the connection) rather than the store's.
type relayWriter struct {
	w   io.Writer
	err error
}

func (r *relayWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil {
		r.err = err
	}
	return n, err
}

// classify turns an error after the greeting into a failure: an SMTP
// reply by its class, anything else (timeout, lost connection, garbage) a
// temporary failure that says where it happened.
func classify(stage string, err error) *failure {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		text, status := smtpReply(se)
		kind := rcptTemporary
		if se.Code >= 500 {
			kind = rcptPermanent
		}
		return &failure{kind: kind, text: text, status: status}
	}
	what := "connection to the relay lost"
	if errors.Is(err, os.ErrDeadlineExceeded) {
		what = "the relay did not answer in time"
	}
	return &failure{kind: rcptTemporary, text: sanitize(fmt.Sprintf("%s at %s: %v", what, stage, err)), status: "4.4.2"}
}

// smtpReply renders a reply as the relay sent it: code, enhanced code,
// text; and its RFC 3463 status (from the class when there is none).
func smtpReply(se *smtp.SMTPError) (text, status string) {
	ec := se.EnhancedCode
	msg := oneLine(se.Message)
	if ec[0] > 0 && ec != smtp.NoEnhancedCode {
		status = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		return sanitize(fmt.Sprintf("%d %s %s", se.Code, status, msg)), status
	}
	return sanitize(fmt.Sprintf("%d %s", se.Code, msg)), fmt.Sprintf("%d.0.0", se.Code/100)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// sanitize keeps a reply printable and bounded: it ends up in headers of
// notices and in JSON.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReplyLen {
		s = s[:maxReplyLen] + "…"
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(l []string) bool {
	for _, s := range l {
		if !isASCII(s) {
			return false
		}
	}
	return true
}
