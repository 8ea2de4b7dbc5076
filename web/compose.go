package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/storage"
)

// SubmitFunc submits one message from user exactly as SMTP submission
// does (smtpd.Server.Submit); a refusal is an *smtp.SMTPError.
type SubmitFunc func(ctx context.Context, user, client string, remote netip.Addr, rcpts []string, raw []byte) error

// composeJSON is the body of POST /api/v1/send and /api/v1/drafts, as
// JSON or as multipart/form-data (readComposeForm: the same names, files
// in parts named attachment).
type composeJSON struct {
	To         []string `json:"to"`
	Cc         []string `json:"cc"`
	Bcc        []string `json:"bcc"`
	Subject    string   `json:"subject"`
	Text       string   `json:"text"`
	Importance string   `json:"importance"`
	DraftUID   uint32   `json:"draft_uid,omitempty"`
	// Attachments are new files (JSON: data in base64).
	Attachments []uploadJSON `json:"attachments,omitempty"`
	// KeepAttachments are the indexes (GET /api/v1/messages/UID's
	// attachments) of draft_uid's attachments that stay in the message.
	KeepAttachments []int `json:"keep_attachments,omitempty"`
}

// uploadJSON is one attached file.
type uploadJSON struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Data []byte `json:"data"`
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
	if n := len(c.Attachments) + len(c.KeepAttachments); n > maxAttachments {
		return fmt.Errorf("%d attachments: want at most %d", n, maxAttachments)
	}
	if len(c.KeepAttachments) > 0 && c.DraftUID == 0 {
		return errors.New("keep_attachments: name the draft they are kept from (draft_uid)")
	}
	for _, i := range c.KeepAttachments {
		if i < 0 || i >= maxAttachments {
			return fmt.Errorf("keep_attachments: %d is not an attachment index", i)
		}
	}
	return nil
}

// build writes the message as a mail client would (go-message): the
// header (Bcc kept for the sender's copy; submission removes it from every
// other), the text as UTF-8 quoted-printable, and with attachments a
// multipart/mixed message whose files are base64 parts.
func (c *composeJSON) build(from string, now time.Time) ([]byte, error) {
	// go-message puts each new field on top: set them last to first.
	var h gomail.Header
	if c.Importance == "high" {
		h.Set("X-Priority", "1")
		h.Set("Importance", "high")
	}
	h.SetDate(now)
	h.SetSubject(c.Subject)
	for _, f := range []struct {
		name string
		list []string
	}{{"Bcc", c.Bcc}, {"Cc", c.Cc}, {"To", c.To}} {
		if len(f.list) > 0 {
			list := make([]*gomail.Address, 0, len(f.list))
			for _, a := range f.list {
				list = append(list, &gomail.Address{Address: a})
			}
			h.SetAddressList(f.name, list)
		}
	}
	h.SetAddressList("From", []*gomail.Address{{Address: from}})
	text := strings.ReplaceAll(strings.ReplaceAll(c.Text, "\r\n", "\n"), "\r", "\n")
	text = strings.ReplaceAll(text, "\n", "\r\n")
	var b bytes.Buffer
	if len(c.Attachments) == 0 {
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		w, err := gomail.CreateSingleInlineWriter(&b, h)
		if err != nil {
			return nil, fmt.Errorf("web: building the message: %w", err)
		}
		io.WriteString(w, text)
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("web: building the message: %w", err)
		}
		b.WriteString("\r\n")
		return b.Bytes(), nil
	}
	mw, err := gomail.CreateWriter(&b, h)
	if err != nil {
		return nil, fmt.Errorf("web: building the message: %w", err)
	}
	var ih gomail.InlineHeader
	ih.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	tw, err := mw.CreateSingleInline(ih)
	if err != nil {
		return nil, fmt.Errorf("web: building the message: %w", err)
	}
	io.WriteString(tw, text)
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("web: building the message: %w", err)
	}
	for _, a := range c.Attachments {
		var ah gomail.AttachmentHeader
		ah.SetContentType(attachmentType(a.Type), nil)
		ah.SetFilename(attachmentName(a.Name))
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return nil, fmt.Errorf("web: building the message: %w", err)
		}
		aw.Write(a.Data)
		if err := aw.Close(); err != nil {
			return nil, fmt.Errorf("web: building the message: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("web: building the message: %w", err)
	}
	return b.Bytes(), nil
}

// attachmentType is a file's media type without parameters when it is a
// valid one, else application/octet-stream.
func attachmentType(t string) string {
	mt, _, err := mime.ParseMediaType(t)
	if err != nil || !strings.Contains(mt, "/") || strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
		return "application/octet-stream"
	}
	return mt
}

// maxAttachmentName bounds a file name, in bytes.
const maxAttachmentName = 255

// attachmentName is a file name fit for the header: the last path element,
// no control characters, at most maxAttachmentName bytes.
func attachmentName(name string) string {
	if i := strings.LastIndexAny(name, "/\\"); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	if len(name) > maxAttachmentName {
		// Cut the stem and keep a short extension.
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i >= 0 && len(name)-i <= 16 {
			name, ext = name[:i], name[i:]
		}
		for len(name)+len(ext) > maxAttachmentName {
			_, size := utf8.DecodeLastRuneInString(name)
			name = name[:len(name)-size]
		}
		name += ext
	}
	if strings.Trim(name, ". ") == "" {
		return "attachment"
	}
	return name
}

func (c *composeJSON) recipients() []string {
	return append(append(append([]string{}, c.To...), c.Cc...), c.Bcc...)
}

// maxComposeField bounds one form field of the compose form other than
// the text and the files.
const maxComposeField = 64 << 10

// errTooLarge is the compose request over the message size limit.
var errTooLarge = errors.New("message too large")

// readComposeForm reads a multipart/form-data compose request part by
// part: the text and the files together may hold at most budget bytes
// (errTooLarge beyond, found while reading, before any more is buffered).
func readComposeForm(r *http.Request, budget int64) (*composeJSON, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, formError(err)
	}
	var c composeJSON
	split := func(v string) []string {
		return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return &c, nil
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errTooLarge
		}
		if err != nil {
			return nil, formError(err)
		}
		name := part.FormName()
		limit := int64(maxComposeField)
		if name == "text" || name == "attachment" {
			limit = budget
		}
		data, err := io.ReadAll(io.LimitReader(part, limit+1))
		part.Close()
		if errors.As(err, &tooBig) {
			return nil, errTooLarge
		}
		if err != nil {
			return nil, formError(err)
		}
		if int64(len(data)) > limit {
			if limit == budget {
				return nil, errTooLarge
			}
			return nil, fmt.Errorf("form field %s: larger than %d bytes", name, limit)
		}
		v := string(data)
		switch name {
		case "to":
			c.To = append(c.To, split(v)...)
		case "cc":
			c.Cc = append(c.Cc, split(v)...)
		case "bcc":
			c.Bcc = append(c.Bcc, split(v)...)
		case "subject":
			c.Subject = v
		case "text":
			budget -= int64(len(data))
			c.Text = v
		case "importance":
			c.Importance = v
		case "draft_uid":
			if v == "" {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("draft_uid %q: want a UID", v)
			}
			c.DraftUID = uint32(n)
		case "keep_attachments":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("keep_attachments %q: want an attachment index", v)
			}
			c.KeepAttachments = append(c.KeepAttachments, n)
		case "attachment":
			if part.FileName() == "" && len(data) == 0 {
				continue // an empty file input
			}
			if len(c.Attachments) >= maxAttachments {
				return nil, fmt.Errorf("more than %d attachments", maxAttachments)
			}
			budget -= int64(len(data))
			c.Attachments = append(c.Attachments, uploadJSON{Name: part.FileName(), Type: part.Header.Get("Content-Type"), Data: data})
		case "csrf":
		default:
			return nil, fmt.Errorf("form field %q: this endpoint takes to, cc, bcc, subject, text, importance, draft_uid, keep_attachments and attachment", name)
		}
	}
}

// formError is the 400 sentence for a broken form; a form's own text in
// it is cut short.
func formError(err error) error {
	msg := err.Error()
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "…"
	}
	return fmt.Errorf("request body: %s", msg)
}

// composeLimit bounds a compose request body: the message size limit, a
// third more for base64 in JSON, and room for the other fields.
func (s *Server) composeLimit() int64 {
	return s.opts.MaxMessageSize/3*4 + 1<<20
}

// tooLarge answers a message over [smtp] max_message_size with the
// sentence and code SMTP submission gives.
func (s *Server) tooLarge(w http.ResponseWriter) {
	writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
		"error":     fmt.Sprintf("Message exceeds the maximum size of %d bytes; nothing was stored", s.opts.MaxMessageSize),
		"smtp_code": 552})
}

// readCompose reads and checks a compose request (JSON or form); the
// error is answered.
func (s *Server) readCompose(w http.ResponseWriter, r *http.Request) *composeJSON {
	if r.ContentLength > s.composeLimit() {
		s.tooLarge(w)
		return nil
	}
	var c *composeJSON
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		var err error
		if c, err = readComposeForm(r, s.opts.MaxMessageSize); errors.Is(err, errTooLarge) {
			s.tooLarge(w)
			return nil
		} else if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return nil
		}
	} else {
		c = new(composeJSON)
		if err := readJSON(r, c); err != nil {
			if errors.As(err, new(tooLargeBody)) {
				s.tooLarge(w)
				return nil
			}
			jsonError(w, http.StatusBadRequest, err.Error())
			return nil
		}
	}
	if err := c.check(); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	return c
}

// message builds the message of a compose request: the draft's kept
// attachments first, then the new files. A result over the size limit is
// answered 413 (nil returned), as is every other error.
func (s *Server) message(w http.ResponseWriter, r *http.Request, ss *session, c *composeJSON) []byte {
	if len(c.KeepAttachments) > 0 {
		kept, err := s.draftAttachments(r.Context(), ss.Address, imap.UID(c.DraftUID), c.KeepAttachments)
		if errors.Is(err, storage.ErrNotFound) {
			jsonError(w, http.StatusNotFound, err.Error())
			return nil
		}
		if err != nil {
			s.storeError(w, r, err)
			return nil
		}
		c.Attachments = append(kept, c.Attachments...)
	}
	var size int64
	for _, a := range c.Attachments {
		size += int64(len(a.Data))
	}
	if size+int64(len(c.Text)) > s.opts.MaxMessageSize {
		s.tooLarge(w)
		return nil
	}
	raw, err := c.build(ss.Address, time.Now())
	if err != nil {
		s.internal(w, r, err)
		return nil
	}
	return raw
}

// draftAttachments returns the attachments of user's draft uid with the
// given indexes (as GET /api/v1/messages/UID numbers them).
func (s *Server) draftAttachments(ctx context.Context, user string, uid imap.UID, indexes []int) ([]uploadJSON, error) {
	mb, err := s.opts.Store.Mailbox(ctx, user, storage.Drafts)
	if err != nil {
		return nil, err
	}
	msgs, err := s.opts.Store.Messages(ctx, user, mb.ID, []imap.UID{uid}, storage.LoadOptions{Body: true, BodyMax: s.opts.MaxMessageSize * 2})
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 || msgs[0].Body == nil {
		return nil, fmt.Errorf("draft %d: %w (reopen it and attach the files again)", uid, storage.ErrNotFound)
	}
	want := make(map[int]bool, len(indexes))
	for _, i := range indexes {
		want[i] = true
	}
	parts := readParts(msgs[0].Body, want)
	out := make([]uploadJSON, 0, len(indexes))
	for _, i := range indexes {
		p, ok := parts.picked[i]
		if !ok {
			return nil, fmt.Errorf("draft %d has no attachment %d: %w", uid, i, storage.ErrNotFound)
		}
		out = append(out, uploadJSON{Name: p.name, Type: p.typ, Data: p.data})
	}
	return out, nil
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
	raw := s.message(w, r, ss, c)
	if raw == nil {
		return
	}
	err := s.opts.Submit(r.Context(), ss.Address, "web", clientAddr(r), c.recipients(), raw)
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
	raw := s.message(w, r, ss, c)
	if raw == nil {
		return
	}
	if int64(len(raw)) > s.opts.MaxMessageSize {
		s.tooLarge(w)
		return
	}
	a, err := s.opts.Store.Append(r.Context(), ss.Address, storage.Drafts, &storage.NewMessage{
		Raw: raw, Flags: []imap.Flag{imap.FlagDraft, imap.FlagSeen}})
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
