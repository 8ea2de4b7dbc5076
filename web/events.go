package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// hub passes the store's events to the open event streams. publish runs on
// the store's writer goroutine: it never blocks (a stream that is behind
// loses events, and the page reloads what it shows anyway).
type hub struct {
	mu     sync.Mutex
	subs   map[chan storage.Event]string // stream -> its user
	closed bool
}

func newHub() *hub { return &hub{subs: make(map[chan storage.Event]string)} }

func (h *hub) publish(ev storage.Event) {
	if ev.Kind != storage.EventAppend && ev.Kind != storage.EventTracking {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch, user := range h.subs {
		if user == ev.User {
			select {
			case ch <- ev:
			default:
			}
		}
	}
}

// subscribe returns a stream of user's events; nil once the hub is closed.
func (h *hub) subscribe(user string) chan storage.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	ch := make(chan storage.Event, 64)
	h.subs[ch] = user
	return ch
}

func (h *hub) unsubscribe(ch chan storage.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// close ends every stream (shutdown).
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

// mailEvent is the data of a "mail" event (SPEC.md "Web interface"), with
// alert set for the queue's alert mails.
type mailEvent struct {
	Mailbox   string `json:"mailbox"`
	UID       uint32 `json:"uid"`
	Subject   string `json:"subject"`
	From      string `json:"from"`
	Important bool   `json:"important"`
	Alert     bool   `json:"alert"`
}

// sentEvent is the data of a "sent" event: a Sent message's not_delivered
// changed.
type sentEvent struct {
	Mailbox      string   `json:"mailbox"`
	UID          uint32   `json:"uid"`
	MessageID    string   `json:"message_id"`
	Subject      string   `json:"subject"`
	NotDelivered []string `json:"not_delivered"`
}

// describeSent loads the record a tracking event is about.
func (s *Server) describeSent(r *http.Request, ss *session, ev storage.Event) (*sentEvent, bool) {
	if ev.UID == 0 {
		// Settled with no Sent copy left: nothing to show.
		return nil, false
	}
	recs, err := s.opts.Store.SentStatusFor(r.Context(), ss.Address, ev.MailboxID, []imap.UID{ev.UID})
	if err != nil {
		return nil, false
	}
	m, ok := recs[ev.UID]
	if !ok || m.ID != ev.TrackingID {
		return nil, false
	}
	st := statusOf(m)
	return &sentEvent{Mailbox: storage.Sent, UID: uint32(ev.UID), MessageID: m.MessageID, Subject: m.Subject, NotDelivered: st.notDelivered}, true
}

// keepAlive is how often an idle stream sends a comment, so proxies keep it.
const keepAlive = 30 * time.Second

// apiEvents is GET /api/v1/events: Server-Sent Events.
func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request, ss *session) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		s.log.Debug("web: event stream keeps the write timeout", "err", err)
	}
	ch := s.events.subscribe(ss.Address)
	if ch == nil {
		jsonError(w, http.StatusServiceUnavailable, "the server is shutting down")
		return
	}
	defer s.events.unsubscribe(ch)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": pochta events\n\n")
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	names := map[uint64]string{}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case ev, ok := <-ch:
			if !ok {
				return
			}
			name, data, ok := "mail", any(nil), false
			if ev.Kind == storage.EventTracking {
				name = "sent"
				data, ok = s.describeSent(r, ss, ev)
			} else {
				data, ok = s.describe(r, ss, ev, names)
			}
			if !ok {
				continue
			}
			b, _ := json.Marshal(data)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// describe loads what a "mail" event tells about a new message.
func (s *Server) describe(r *http.Request, ss *session, ev storage.Event, names map[uint64]string) (*mailEvent, bool) {
	name, ok := names[ev.MailboxID]
	if !ok {
		boxes, err := s.opts.Store.Mailboxes(r.Context(), ss.Address)
		if err != nil {
			return nil, false
		}
		for _, b := range boxes {
			names[b.ID] = b.Name
		}
		if name, ok = names[ev.MailboxID]; !ok {
			return nil, false
		}
	}
	msgs, err := s.opts.Store.Messages(r.Context(), ss.Address, ev.MailboxID, []imap.UID{ev.UID}, storage.LoadOptions{Envelope: true})
	if err != nil || len(msgs) == 0 || msgs[0].Envelope == nil {
		return nil, false
	}
	m := msgs[0]
	e := &mailEvent{Mailbox: name, UID: uint32(m.UID), Subject: m.Envelope.Subject, Important: slices.Contains(m.Flags, imap.Flag("$Important"))}
	if len(m.Envelope.From) > 0 {
		e.From = m.Envelope.From[0].Addr()
	}
	if strings.EqualFold(name, storage.Inbox) && s.isAlertFrom(m.Envelope) {
		_, _, e.Alert = alertKind(m.Envelope.Subject)
	}
	return e, true
}
