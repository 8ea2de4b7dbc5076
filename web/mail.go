package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode the charsets mail uses
	"github.com/microcosm-cc/bluemonday"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/storage"
)

// Bounds of the mail API.
const (
	defaultPage    = 50
	maxPage        = 500
	maxViewBody    = 32 << 20 // a larger message is listed, not shown
	maxShownText   = 1 << 20  // of text and of html, each
	maxAttachments = 1000     // listed per message
)

// mailboxJSON is one entry of GET /api/v1/mailboxes (SPEC.md).
type mailboxJSON struct {
	Name        string `json:"name"`
	SpecialUse  string `json:"special_use"`
	Messages    uint32 `json:"messages"`
	Unseen      uint32 `json:"unseen"`
	PendingSent int    `json:"pending_sent"`
}

// sentStatus describes what read tracking says of one Sent message: the
// seed's "Not delivered" (who has not read it, or is still queued) and the
// recipients the queue gave up on.
type sentStatus struct {
	notDelivered []string
	failed       []string
	messageID    string
}

// sentPage returns the read-tracking state of the given Sent messages of
// user, keyed by UID; it reads one index entry per message
// (storage.SentPageStore), whatever the user has sent before.
func (s *Server) sentPage(r *http.Request, user string, mailboxID uint64, uids []imap.UID) (map[imap.UID]sentStatus, error) {
	recs, err := s.opts.Store.SentStatusFor(r.Context(), user, mailboxID, uids)
	if err != nil {
		return nil, err
	}
	out := make(map[imap.UID]sentStatus, len(recs))
	for uid, m := range recs {
		out[uid] = statusOf(m)
	}
	return out, nil
}

func statusOf(m storage.SentMessage) sentStatus {
	st := sentStatus{notDelivered: []string{}, failed: []string{}, messageID: bareMessageID(m.MessageID)}
	for _, rc := range m.Recipients {
		switch {
		case rc.Pending():
			st.notDelivered = append(st.notDelivered, rc.Address)
		case rc.State == storage.TrackFailed:
			st.failed = append(st.failed, rc.Address)
		}
	}
	return st
}

// pendingSentCount counts user's sent messages some recipient has not
// read yet (the Sent folder's bold).
func (s *Server) pendingSentCount(r *http.Request, user string) (int, error) {
	list, err := s.opts.Store.SentStatus(r.Context(), user)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range list {
		if slices.ContainsFunc(m.Recipients, storage.SentRecipient.Pending) {
			n++
		}
	}
	return n, nil
}

// queueLinkFor is the queue page listing the failed entry of the message
// with that Message-ID (the /queue filters status and message_id).
func queueLinkFor(messageID string) string {
	return "/queue?" + url.Values{"status": {storage.QueueFailed}, "message_id": {messageID}}.Encode()
}

func bareMessageID(id string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(id), "<"), ">")
}

func (s *Server) apiMailboxes(w http.ResponseWriter, r *http.Request, ss *session) {
	boxes, err := s.opts.Store.Mailboxes(r.Context(), ss.Address)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]mailboxJSON, 0, len(boxes))
	for _, b := range boxes {
		st, err := s.opts.Store.MailboxStatus(r.Context(), ss.Address, b.Name)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		j := mailboxJSON{Name: b.Name, SpecialUse: string(b.SpecialUse), Messages: st.Messages, Unseen: st.Unseen}
		if b.Name == storage.Sent {
			n, err := s.pendingSentCount(r, ss.Address)
			if err != nil {
				s.storeError(w, r, err)
				return
			}
			j.PendingSent = n
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

// messageJSON is one entry of GET /api/v1/messages (SPEC.md).
type messageJSON struct {
	UID       uint32    `json:"uid"`
	From      string    `json:"from"`
	To        []string  `json:"to"`
	Cc        []string  `json:"cc"`
	Subject   string    `json:"subject"`
	Date      time.Time `json:"date"`
	Seen      bool      `json:"seen"`
	Important bool      `json:"important"`
	// NotDelivered is only in Sent: [] once everyone has read.
	NotDelivered *[]string `json:"not_delivered,omitempty"`
	// Failed (only in Sent) are the recipients the queue gave up on, and
	// QueueLink the queue page showing that message's failed entry.
	Failed    *[]string `json:"failed,omitempty"`
	QueueLink string    `json:"queue_link,omitempty"`
}

// messageBodyJSON is GET /api/v1/messages/UID.
type messageBodyJSON struct {
	messageJSON
	Text string `json:"text"`
	HTML string `json:"html"`
	// RemoteImages counts the remote images removed from HTML; ask again
	// with images=allow to keep them.
	RemoteImages int              `json:"remote_images"`
	Attachments  []attachmentJSON `json:"attachments"`
	// TooLarge: the message is larger than the page shows.
	TooLarge bool `json:"too_large,omitempty"`
}

type attachmentJSON struct {
	Index int    `json:"index"` // for GET /api/v1/messages/UID/attachments/INDEX
	Name  string `json:"name"`
	Type  string `json:"type"`
	Size  int64  `json:"size"`
}

func addresses(list []envelope.Address) []string {
	out := make([]string, 0, len(list))
	for _, a := range list {
		if addr := a.Addr(); addr != "" {
			out = append(out, addr)
		}
	}
	return out
}

// describeMessage is the list entry of m; sent is non-nil in Sent (the
// page's tracking state, sentPage).
func describeMessage(m *storage.Message, sent map[imap.UID]sentStatus) messageJSON {
	j := messageJSON{UID: uint32(m.UID), Date: m.InternalDate, To: []string{}, Cc: []string{},
		Seen:      slices.ContainsFunc(m.Flags, func(f imap.Flag) bool { return strings.EqualFold(string(f), string(imap.FlagSeen)) }),
		Important: slices.ContainsFunc(m.Flags, func(f imap.Flag) bool { return strings.EqualFold(string(f), "$Important") })}
	if e := m.Envelope; e != nil {
		j.Subject = e.Subject
		if len(e.From) > 0 {
			j.From = e.From[0].Addr()
		}
		j.To, j.Cc = addresses(e.To), addresses(e.Cc)
		if !e.Date.IsZero() {
			j.Date = e.Date
		}
	}
	if sent != nil {
		st, ok := sent[m.UID]
		if !ok {
			st = sentStatus{notDelivered: []string{}, failed: []string{}}
		}
		j.NotDelivered, j.Failed = &st.notDelivered, &st.failed
		if len(st.failed) > 0 && st.messageID != "" {
			j.QueueLink = queueLinkFor(st.messageID)
		}
	}
	return j
}

// mailboxFor resolves ?mailbox=NAME of the session's user; the error is
// answered.
func (s *Server) mailboxFor(w http.ResponseWriter, r *http.Request, ss *session) *storage.Mailbox {
	name := r.URL.Query().Get("mailbox")
	if name == "" {
		jsonError(w, http.StatusBadRequest, "want ?mailbox=NAME")
		return nil
	}
	mb, err := s.opts.Store.Mailbox(r.Context(), ss.Address, name)
	if err != nil {
		s.storeError(w, r, err)
		return nil
	}
	return mb
}

// apiMessages is GET /api/v1/messages?mailbox=NAME[&before=UID][&limit=N]:
// one page, newest first, read from the store page by page; the header
// X-Next-Before continues the list.
func (s *Server) apiMessages(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	var before uint64
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			jsonError(w, http.StatusBadRequest, fmt.Sprintf("before %q: want a UID", v))
			return
		}
		before = n
	}
	limit := defaultPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			jsonError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", v, maxPage))
			return
		}
		limit = n
	}
	mb := s.mailboxFor(w, r, ss)
	if mb == nil {
		return
	}
	uids, err := s.opts.Store.UIDsBefore(r.Context(), ss.Address, mb.ID, imap.UID(before), limit)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	msgs, err := s.opts.Store.Messages(r.Context(), ss.Address, mb.ID, uids, storage.LoadOptions{Envelope: true})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	var sent map[imap.UID]sentStatus
	if mb.Name == storage.Sent {
		if sent, err = s.sentPage(r, ss.Address, mb.ID, uids); err != nil {
			s.storeError(w, r, err)
			return
		}
	}
	out := make([]messageJSON, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, describeMessage(m, sent))
	}
	if len(uids) == limit {
		w.Header().Set("X-Next-Before", strconv.FormatUint(uint64(uids[len(uids)-1]), 10))
	}
	writeJSON(w, http.StatusOK, out)
}

func parseUID(v string) (imap.UID, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("UID %q: want a positive number", v)
	}
	return imap.UID(n), nil
}

// loadMessage loads one message of the session's user with its body
// (nil above maxViewBody); the error is answered.
func (s *Server) loadMessage(w http.ResponseWriter, r *http.Request, ss *session) (*storage.Mailbox, *storage.Message) {
	uid, err := parseUID(r.PathValue("uid"))
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return nil, nil
	}
	mb := s.mailboxFor(w, r, ss)
	if mb == nil {
		return nil, nil
	}
	msgs, err := s.opts.Store.Messages(r.Context(), ss.Address, mb.ID, []imap.UID{uid}, storage.LoadOptions{Envelope: true, Body: true, BodyMax: maxViewBody})
	if err != nil {
		s.storeError(w, r, err)
		return nil, nil
	}
	if len(msgs) == 0 {
		jsonError(w, http.StatusNotFound, fmt.Sprintf("no message %d in %s", uid, mb.Name))
		return nil, nil
	}
	return mb, msgs[0]
}

// apiMessage is GET /api/v1/messages/UID?mailbox=NAME[&images=allow]: the
// message with its text, sanitised HTML and attachments; it marks it read
// (\Seen through the store, so the sender's read tracking settles).
func (s *Server) apiMessage(w http.ResponseWriter, r *http.Request, ss *session) {
	mb, m := s.loadMessage(w, r, ss)
	if m == nil {
		return
	}
	var sent map[imap.UID]sentStatus
	if mb.Name == storage.Sent {
		var err error
		if sent, err = s.sentPage(r, ss.Address, mb.ID, []imap.UID{m.UID}); err != nil {
			s.storeError(w, r, err)
			return
		}
	}
	j := messageBodyJSON{messageJSON: describeMessage(m, sent), Attachments: []attachmentJSON{}}
	if m.Body == nil {
		j.TooLarge = true
	} else {
		parts := readParts(m.Body, nil)
		j.Text, j.Attachments = parts.text, parts.attachments
		if parts.html != "" {
			j.HTML, j.RemoteImages = sanitizeHTML(parts.html, r.URL.Query().Get("images") == "allow")
		}
	}
	if !j.Seen {
		if _, err := s.opts.Store.StoreFlags(r.Context(), ss.Address, mb.ID, []imap.UID{m.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
			s.storeError(w, r, err)
			return
		}
		j.Seen = true
	}
	writeJSON(w, http.StatusOK, j)
}

// apiAttachment is GET /api/v1/messages/UID/attachments/INDEX?mailbox=NAME:
// the attachment's decoded bytes, always as a download.
func (s *Server) apiAttachment(w http.ResponseWriter, r *http.Request, ss *session) {
	idx, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || idx < 0 || idx >= maxAttachments {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("attachment %q: want 0 to %d", r.PathValue("index"), maxAttachments-1))
		return
	}
	_, m := s.loadMessage(w, r, ss)
	if m == nil {
		return
	}
	if m.Body == nil {
		jsonError(w, http.StatusRequestEntityTooLarge, "the message is too large for the web interface; use an IMAP client")
		return
	}
	parts := readParts(m.Body, map[int]bool{idx: true})
	picked, ok := parts.picked[idx]
	if !ok {
		jsonError(w, http.StatusNotFound, fmt.Sprintf("message %d has no attachment %d", m.UID, idx))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": picked.name}))
	w.Write(picked.data)
}

// messageParts is what readParts found.
type messageParts struct {
	text, html  string
	attachments []attachmentJSON
	picked      map[int]pickedPart // the attachments asked for, by index
}

// pickedPart is one attachment's decoded bytes.
type pickedPart struct {
	name, typ string
	data      []byte
}

// readParts walks a message's MIME tree: the first text/plain and
// text/html parts not marked as attachments are the body, every other leaf
// is an attachment (numbered in walk order); with pick >= 0 that
// attachment's bytes are kept. Broken MIME gives what could be read.
func readParts(raw []byte, pick map[int]bool) messageParts {
	var p messageParts
	p.attachments = []attachmentJSON{}
	p.picked = map[int]pickedPart{}
	e, err := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		p.text = "(this message cannot be read: " + err.Error() + ")"
		return p
	}
	n := 0
	e.Walk(func(_ []int, part *gomessage.Entity, err error) error {
		if err != nil || part == nil {
			return nil
		}
		t, params, _ := part.Header.ContentType()
		if strings.HasPrefix(t, "multipart/") {
			return nil
		}
		if t == "" {
			t = "text/plain"
		}
		disp, dparams, _ := part.Header.ContentDisposition()
		name := dparams["filename"]
		if name == "" {
			name = params["name"]
		}
		body := part.Body
		if disp != "attachment" && name == "" {
			switch {
			case t == "text/plain" && p.text == "":
				b, _ := io.ReadAll(io.LimitReader(body, maxShownText))
				p.text = string(b)
				return nil
			case t == "text/html" && p.html == "":
				b, _ := io.ReadAll(io.LimitReader(body, maxShownText))
				p.html = string(b)
				return nil
			}
		}
		if n >= maxAttachments {
			return nil
		}
		if name == "" {
			name = fmt.Sprintf("part-%d", n+1)
		}
		a := attachmentJSON{Index: n, Name: name, Type: t}
		if pick[n] {
			data, _ := io.ReadAll(io.LimitReader(body, maxViewBody))
			if data == nil {
				data = []byte{}
			}
			p.picked[n] = pickedPart{name: name, typ: t, data: data}
			a.Size = int64(len(data))
		} else {
			a.Size, _ = io.Copy(io.Discard, body)
		}
		p.attachments = append(p.attachments, a)
		n++
		return nil
	})
	return p
}

// sanitizeHTML keeps the harmless part of mail HTML (bluemonday's policy
// for user content: no script, no event handlers, no style, no
// javascript: URLs); remote images are removed unless allowed. It returns
// the HTML and how many remote images it removed.
func sanitizeHTML(html string, allowImages bool) (string, int) {
	p := bluemonday.UGCPolicy()
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	remote := 0
	p.RewriteSrc(func(u *url.URL) {
		switch {
		case u.Scheme == "http" || u.Scheme == "https":
			if !allowImages {
				remote++
				*u = url.URL{}
			}
		default:
			// A relative src would ask this site, with the user's cookie.
			*u = url.URL{}
		}
	})
	return p.Sanitize(html), remote
}

// apiAddresses is GET /api/v1/addresses: the local users' addresses, for
// address completion in the compose form.
func (s *Server) apiAddresses(w http.ResponseWriter, r *http.Request, _ *session) {
	users, err := s.opts.Store.Users(r.Context())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]string, 0, len(users))
	for _, u := range users {
		out = append(out, u.Address)
	}
	writeJSON(w, http.StatusOK, out)
}
