package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/storage"
)

// SubmitFunc submits one message from user exactly as SMTP submission
// does (smtpd.Server.Submit); a refusal is an *smtp.SMTPError.
type SubmitFunc func(ctx context.Context, user, client string, remote netip.Addr, rcpts []string, raw []byte) error

// composeJSON is the body of POST /api/v1/send and /api/v1/drafts.
type composeJSON struct {
	To         []string `json:"to"`
	Cc         []string `json:"cc"`
	Bcc        []string `json:"bcc"`
	Subject    string   `json:"subject"`
	Text       string   `json:"text"`
	Importance string   `json:"importance"`
	DraftUID   uint32   `json:"draft_uid,omitempty"`
}

// maxSubject bounds a subject typed in the page.
const maxSubject = 998

func (c *composeJSON) check() error {
	switch c.Importance {
	case "", "normal", "high":
	default:
		return fmt.Errorf("importance %q: want normal or high", c.Importance)
	}
	if len(c.Subject) > maxSubject || strings.ContainsAny(c.Subject, "\r\n") {
		return fmt.Errorf("subject: want one line of at most %d bytes", maxSubject)
	}
	for _, list := range [][]string{c.To, c.Cc, c.Bcc} {
		for _, a := range list {
			if a == "" || strings.ContainsAny(a, "\r\n<>,;\" ") || strings.Count(a, "@") != 1 {
				return fmt.Errorf("address %q: want one plain address like user@example.com", a)
			}
		}
	}
	return nil
}

// build writes the message as a mail client would: the header (Bcc kept
// for the sender's copy; submission removes it from every other) and the
// text as UTF-8 quoted-printable.
func (c *composeJSON) build(from string, now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\n", from)
	for _, f := range []struct {
		name string
		list []string
	}{{"To", c.To}, {"Cc", c.Cc}, {"Bcc", c.Bcc}} {
		if len(f.list) > 0 {
			fmt.Fprintf(&b, "%s: %s\r\n", f.name, strings.Join(f.list, ", "))
		}
	}
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", c.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	if c.Importance == "high" {
		b.WriteString("Importance: high\r\nX-Priority: 1\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	text := strings.ReplaceAll(strings.ReplaceAll(c.Text, "\r\n", "\n"), "\r", "\n")
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	w.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}

func (c *composeJSON) recipients() []string {
	return append(append(append([]string{}, c.To...), c.Cc...), c.Bcc...)
}

func (s *Server) readCompose(w http.ResponseWriter, r *http.Request) *composeJSON {
	var c composeJSON
	if err := readJSON(r, &c); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	if err := c.check(); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	return &c
}

// apiSend is POST /api/v1/send: submitted through Options.Submit, the SMTP
// submission code itself; a refusal answers 422 with the SMTP reply's
// sentence (and its code), a temporary one 503.
func (s *Server) apiSend(w http.ResponseWriter, r *http.Request, ss *session) {
	c := s.readCompose(w, r)
	if c == nil {
		return
	}
	if s.opts.Submit == nil {
		jsonError(w, http.StatusServiceUnavailable, "sending is not set up on this server")
		return
	}
	err := s.opts.Submit(r.Context(), ss.Address, "web", clientAddr(r), c.recipients(), c.build(ss.Address, time.Now()))
	var reply *smtp.SMTPError
	switch {
	case errors.As(err, &reply):
		status := http.StatusUnprocessableEntity
		if reply.Code < 500 {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"error": reply.Message, "smtp_code": reply.Code})
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	s.log.Info("web: message sent", "user", ss.Address, "rcpts", len(c.recipients()))
	if c.DraftUID != 0 {
		if err := s.removeDraft(r.Context(), ss.Address, imap.UID(c.DraftUID)); err != nil {
			s.log.Warn("web: a sent draft stays in Drafts", "user", ss.Address, "uid", c.DraftUID, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, map[string]bool{"sent": true})
}

// removeDraft expunges one message of Drafts.
func (s *Server) removeDraft(ctx context.Context, user string, uid imap.UID) error {
	mb, err := s.opts.Store.Mailbox(ctx, user, storage.Drafts)
	if err != nil {
		return err
	}
	if _, err := s.opts.Store.StoreFlags(ctx, user, mb.ID, []imap.UID{uid}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		return err
	}
	_, err = s.opts.Store.Expunge(ctx, user, mb.ID, []imap.UID{uid})
	return err
}

// apiDraft is POST /api/v1/drafts: the message saved to Drafts (\Draft,
// \Seen), replacing draft_uid when given; returns {"uid"}.
func (s *Server) apiDraft(w http.ResponseWriter, r *http.Request, ss *session) {
	c := s.readCompose(w, r)
	if c == nil {
		return
	}
	a, err := s.opts.Store.Append(r.Context(), ss.Address, storage.Drafts, &storage.NewMessage{
		Raw: c.build(ss.Address, time.Now()), Flags: []imap.Flag{imap.FlagDraft, imap.FlagSeen}})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if c.DraftUID != 0 {
		if err := s.removeDraft(r.Context(), ss.Address, imap.UID(c.DraftUID)); err != nil {
			s.log.Warn("web: the replaced draft stays in Drafts", "user", ss.Address, "uid", c.DraftUID, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, map[string]uint32{"uid": uint32(a.UID)})
}
