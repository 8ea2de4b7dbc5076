package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/queue"
	"github.com/pochta/pochta/storage"
)

// The alert centre shows the alert mails the queue writes into INBOX
// (SPEC.md "Queue": one per event, from postmaster@, with these subjects).
// It reads the newest alertScan messages of INBOX.
const alertScan = 300

// alertKinds map a subject's beginning to a kind and the queue listing that
// shows what the alert is about.
var alertKinds = []struct {
	prefix, kind, link string
}{
	{queue.SubjectPrefixUndeliverable, "undeliverable", "/queue?status=failed"},
	{queue.SubjectPrefixDelayed, "delayed", "/queue?status=outbox"},
	{queue.SubjectUserLimit, "user_limit", "/queue?status=held"},
	{queue.SubjectSystemLimit, "system_limit", "/queue?status=held"},
	{queue.SubjectRelayDown, "relay_down", "/queue?status=outbox"},
	{queue.SubjectRelayBack, "relay_back", "/queue?status=outbox"},
	{queue.SubjectRelaySettings, "relay_settings", "/queue?status=failed"},
}

// alertJSON is one alert of GET /api/v1/alerts.
type alertJSON struct {
	UID     uint32    `json:"uid"`
	Kind    string    `json:"kind"`
	Title   string    `json:"title"`
	Subject string    `json:"subject"`
	Date    time.Time `json:"date"`
	Seen    bool      `json:"seen"`
	Link    string    `json:"link"`
}

// isAlertFrom reports whether env comes from the postmaster.
func (s *Server) isAlertFrom(env *envelope.Envelope) bool {
	if env == nil || s.opts.Postmaster == "" {
		return false
	}
	for _, a := range env.From {
		if strings.EqualFold(a.Addr(), s.opts.Postmaster) {
			return true
		}
	}
	return false
}

func alertKind(subject string) (kind, link string, ok bool) {
	for _, k := range alertKinds {
		if strings.HasPrefix(subject, k.prefix) {
			return k.kind, k.link, true
		}
	}
	return "", "", false
}

// alerts returns the user's alerts, newest first, and how many are unread.
func (s *Server) alerts(ctx context.Context, ss *session) ([]alertJSON, int, error) {
	out := []alertJSON{}
	box, err := s.opts.Store.Mailbox(ctx, ss.Address, storage.Inbox)
	if err != nil {
		return out, 0, err
	}
	uids, err := s.opts.Store.UIDs(ctx, ss.Address, box.ID)
	if err != nil {
		return out, 0, err
	}
	if len(uids) > alertScan {
		uids = uids[len(uids)-alertScan:]
	}
	msgs, err := s.opts.Store.Messages(ctx, ss.Address, box.ID, uids, storage.LoadOptions{Envelope: true})
	if err != nil {
		return out, 0, err
	}
	t := locales["en"]
	unread := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		if !s.isAlertFrom(m.Envelope) {
			continue
		}
		kind, link, ok := alertKind(m.Envelope.Subject)
		if !ok {
			continue
		}
		// A delivery report names the message it is about: link to its
		// entries (whatever their status is by now) rather than to every
		// failed one.
		if (kind == "undeliverable" || kind == "delayed") && len(m.Envelope.InReplyTo) > 0 {
			link = "/queue?message_id=" + url.QueryEscape(m.Envelope.InReplyTo[0])
		}
		seen := slices.Contains(m.Flags, imap.FlagSeen)
		if !seen {
			unread++
		}
		out = append(out, alertJSON{UID: uint32(m.UID), Kind: kind, Title: t["alert_"+kind], Subject: m.Envelope.Subject, Date: m.InternalDate, Seen: seen, Link: link})
	}
	return out, unread, nil
}

func (s *Server) apiAlerts(w http.ResponseWriter, r *http.Request, ss *session) {
	list, _, err := s.alerts(r.Context(), ss)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

type alertsView struct {
	Alerts []alertJSON
}

func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	list, _, err := s.alerts(r.Context(), ss)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	t := texts(r)
	for i := range list {
		list[i].Title = t["alert_"+list[i].Kind]
	}
	s.render(w, r, http.StatusOK, "alerts", ss, &alertsView{Alerts: list})
}

// alertsRead marks every alert read (\Seen, as a mail client would).
func (s *Server) alertsRead(w http.ResponseWriter, r *http.Request, ss *session) {
	list, _, err := s.alerts(r.Context(), ss)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	var uids []imap.UID
	for _, a := range list {
		if !a.Seen {
			uids = append(uids, imap.UID(a.UID))
		}
	}
	if len(uids) > 0 {
		box, err := s.opts.Store.Mailbox(r.Context(), ss.Address, storage.Inbox)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if _, err := s.opts.Store.StoreFlags(r.Context(), ss.Address, box.ID, uids, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	http.Redirect(w, r, "/alerts", http.StatusSeeOther)
}
