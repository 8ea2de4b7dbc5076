package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pochta/pochta/storage"
)

var pageNames = []string{"login", "mail", "queue", "confirm", "entry", "alerts"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format("2006-01-02 15:04")
		},
		"join": strings.Join,
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// pageData is what every page template gets.
type pageData struct {
	T        map[string]string
	Lang     string
	Page     string
	User     *session // nil on the sign-in page
	CSRF     string
	Alerts   int // unread alerts, for the header
	LivePoll int64
	View     any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, ss *session, view any) {
	lang := language(r)
	d := &pageData{T: locales[lang], Lang: lang, Page: name, User: ss, View: view, LivePoll: s.opts.LivePoll.Milliseconds()}
	if ss != nil {
		d.CSRF = ss.CSRFToken
		if _, unread, err := s.alerts(r.Context(), ss); err == nil {
			d.Alerts = unread
		} else {
			s.log.Warn("web: counting alerts", "user", ss.Address, "err", err)
		}
	}
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", lang)
	w.Header().Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// mailView is what the mail page's template gets; the page's script
// fills in folders, list and message from the API.
type mailView struct {
	PaneRight bool
}

func (s *Server) mailPage(w http.ResponseWriter, r *http.Request, ss *session) {
	prefs, err := s.opts.Store.WebPrefs(r.Context(), ss.Address)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// Remote images load only where the user asked for them: the API
	// removes every remote src unless asked with images=allow.
	w.Header().Set("Content-Security-Policy", strings.Replace(w.Header().Get("Content-Security-Policy"), "img-src 'self'", "img-src 'self' https: data:", 1))
	s.render(w, r, http.StatusOK, "mail", ss, mailView{PaneRight: prefs.MailPane == "right"})
}

// mailPane is POST /mail/pane (form field pane: below or right): where
// the reading pane goes, kept per user on the server.
func (s *Server) mailPane(w http.ResponseWriter, r *http.Request, ss *session) {
	pane := r.PostFormValue("pane")
	if pane != "below" && pane != "right" {
		http.Error(w, "pane: want below or right", http.StatusBadRequest)
		return
	}
	prefs, err := s.opts.Store.WebPrefs(r.Context(), ss.Address)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	prefs.MailPane = pane
	if pane == "below" {
		prefs.MailPane = ""
	}
	if err := s.opts.Store.SetWebPrefs(r.Context(), ss.Address, prefs); err != nil {
		s.internal(w, r, err)
		return
	}
	if r.Header.Get("X-CSRF-Token") != "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/mail", http.StatusSeeOther)
}

// Optional columns of the queue page, in the seed's order.
var queueColumns = []string{"bcc", "body", "cc", "date", "error", "mime_type", "attempts", "sent", "sent_on"}

// defaultColumns are shown until the user chooses.
var defaultColumns = []string{"date", "error", "attempts", "sent", "sent_on"}

type option struct {
	Value, Label string
	On           bool
}

type column struct {
	Key, Label string
	On         bool
}

type cell struct {
	Label string
	Text  string
	Body  bool // the Body column: a link that shows the body on demand
}

type queueRow struct {
	ID                  uint64
	Status, StatusLabel string
	From, To, Subject   string
	Cells               []cell
}

type queueView struct {
	Statuses, Sources, Orders []option
	User                      string
	MessageID                 string // the listing shows one message (from an alert)
	AllLink                   string // the listing without that
	Columns, AllColumns       []column
	Rows                      []queueRow
	Back                      string // the listing's query, kept across actions
	NextLink, FirstLink       string
	Waiting                   bool     // entries still to go: the page refreshes itself
	Counts                    []option // administrators: the whole queue by status (Value: the count)
	Done                      []string
	Error                     string
}

// listingQuery keeps the listing parameters of a query and nothing else.
func listingQuery(q url.Values) url.Values {
	out := url.Values{}
	for _, k := range []string{"status", "source", "user", "message_id", "order", "limit", "after"} {
		if v := q.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	return out
}

func (s *Server) chosenColumns(r *http.Request, ss *session) []string {
	p, err := s.opts.Store.WebPrefs(r.Context(), ss.Address)
	if err != nil {
		s.log.Warn("web: reading preferences", "user", ss.Address, "err", err)
	}
	if !p.QueueColumnsSet {
		return defaultColumns
	}
	return p.QueueColumns
}

func yesNo(t map[string]string, b bool) string {
	if b {
		return t["yes"]
	}
	return t["no"]
}

func (s *Server) queuePage(w http.ResponseWriter, r *http.Request, ss *session) {
	t := texts(r)
	q := r.URL.Query()
	back := listingQuery(q)
	back.Del("after")
	v := &queueView{User: q.Get("user"), Back: back.Encode(), MessageID: q.Get("message_id")}
	if v.MessageID != "" {
		all := listingQuery(q)
		all.Del("message_id")
		all.Del("after")
		v.AllLink = "/queue?" + all.Encode()
	}
	status := http.StatusOK
	qq, err := parseQueueQuery(q, ss)
	if err != nil {
		status, v.Error = queryProblem(err)
	}
	v.Statuses = []option{{"", t["all_types"], qq.Filter.Status == ""}}
	for _, st := range []string{storage.QueueFailed, storage.QueueOutbox, storage.QueueSent, storage.QueueHeld} {
		v.Statuses = append(v.Statuses, option{st, t["status_"+st], q.Get("status") == st})
	}
	v.Sources = []option{{"", t["all_sources"], q.Get("source") == ""}, {storage.SourceUser, t["source_user"], q.Get("source") == storage.SourceUser}, {storage.SourceSystem, t["source_system"], q.Get("source") == storage.SourceSystem}}
	v.Orders = []option{{"newest", t["newest"], !qq.Page.Oldest}, {"oldest", t["oldest"], qq.Page.Oldest}}
	chosen := s.chosenColumns(r, ss)
	for _, c := range queueColumns {
		col := column{Key: c, Label: t["col_"+c], On: slices.Contains(chosen, c)}
		v.AllColumns = append(v.AllColumns, col)
		if col.On {
			v.Columns = append(v.Columns, col)
		}
	}
	if v.Error == "" {
		list, next, err := s.opts.Store.QueueEntriesPage(r.Context(), qq.Filter, qq.Page)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		for i := range list {
			v.Rows = append(v.Rows, queueRowOf(&list[i], v.Columns, t))
			if list[i].Status == storage.QueueOutbox {
				v.Waiting = true
			}
		}
		if next != 0 {
			l := listingQuery(q)
			l.Set("after", strconv.FormatUint(next, 10))
			v.NextLink = "/queue?" + l.Encode()
		}
		if qq.Page.After != 0 {
			v.FirstLink = "/queue?" + v.Back
		}
	}
	if ss.Admin {
		if c, err := s.opts.Store.QueueCounts(r.Context()); err == nil {
			for _, st := range []string{storage.QueueFailed, storage.QueueOutbox, storage.QueueHeld, storage.QueueSent} {
				v.Counts = append(v.Counts, option{Value: strconv.Itoa(c.ByStatus(st)), Label: t["status_"+st], On: st == storage.QueueFailed && c.Failed > 0})
			}
		}
	}
	if n := q.Get("resent"); n != "" {
		v.Done = append(v.Done, t["done_resent"]+" "+n)
	}
	if n := q.Get("skipped"); n != "" {
		v.Done = append(v.Done, t["done_skipped"]+" "+n)
	}
	if n := q.Get("deleted"); n != "" {
		v.Done = append(v.Done, t["done_deleted"]+" "+n)
	}
	s.render(w, r, status, "queue", ss, v)
}

func queueRowOf(e *storage.QueueEntry, cols []column, t map[string]string) queueRow {
	row := queueRow{ID: e.ID, Status: e.Status, StatusLabel: t["status_"+e.Status], From: e.From, To: strings.Join(e.To, ", "), Subject: e.Subject}
	if row.To == "" {
		row.To = strings.Join(e.Bcc, ", ")
	}
	for _, c := range cols {
		x := cell{Label: c.Label}
		switch c.Key {
		case "bcc":
			x.Text = strings.Join(e.Bcc, ", ")
		case "body":
			x.Body = true
		case "cc":
			x.Text = strings.Join(e.Cc, ", ")
		case "date":
			x.Text = e.Date.Local().Format("2006-01-02 15:04")
		case "error":
			x.Text = e.Error
		case "mime_type":
			x.Text = e.MimeType
		case "attempts":
			x.Text = strconv.Itoa(e.Attempts)
		case "sent":
			x.Text = yesNo(t, e.Sent)
		case "sent_on":
			if e.SentOn != nil {
				x.Text = e.SentOn.Local().Format("2006-01-02 15:04")
			}
		}
		row.Cells = append(row.Cells, x)
	}
	return row
}

// backTo is the queue listing a form came from.
func backTo(r *http.Request, extra url.Values) string {
	q, _ := url.ParseQuery(r.PostFormValue("back"))
	l := listingQuery(q)
	for k, vs := range extra {
		l[k] = vs
	}
	if len(l) == 0 {
		return "/queue"
	}
	return "/queue?" + l.Encode()
}

func (s *Server) queueColumns(w http.ResponseWriter, r *http.Request, ss *session) {
	cols := []string{}
	for _, c := range r.PostForm["col"] {
		if slices.Contains(queueColumns, c) && !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	prefs, err := s.opts.Store.WebPrefs(r.Context(), ss.Address)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	prefs.QueueColumns, prefs.QueueColumnsSet = cols, true
	if err := s.opts.Store.SetWebPrefs(r.Context(), ss.Address, prefs); err != nil {
		s.internal(w, r, err)
		return
	}
	http.Redirect(w, r, backTo(r, nil), http.StatusSeeOther)
}

type confirmView struct {
	Action, Label, Question string
	Rows                    []queueRow
	Back, BackLink          string
}

// queueAction is the page form's resend and delete: tagged entries, a
// confirmation (a page without JavaScript, a dialog with it), then the act.
func (s *Server) queueAction(w http.ResponseWriter, r *http.Request, ss *session) {
	t := texts(r)
	action := r.PostFormValue("action")
	if action != "resend" && action != "delete" {
		http.Error(w, "Unknown action.", http.StatusBadRequest)
		return
	}
	var entries []*storage.QueueEntry
	for _, v := range r.PostForm["id"] {
		if len(entries) == maxIDs {
			http.Error(w, fmt.Sprintf("At most %d entries at once.", maxIDs), http.StatusBadRequest)
			return
		}
		id, err := parseID(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e, err := s.opts.Store.QueueEntry(r.Context(), id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile: nothing to do for it
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if !ss.canAct(e) {
			http.Error(w, fmt.Sprintf("Queue entry %d is not yours.", id), http.StatusForbidden)
			return
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		http.Redirect(w, r, backTo(r, nil), http.StatusSeeOther)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		v := &confirmView{Action: action, Label: t[action], Question: t["confirm_"+action], Back: r.PostFormValue("back"), BackLink: backTo(r, nil)}
		for _, e := range entries {
			v.Rows = append(v.Rows, queueRowOf(e, nil, t))
		}
		s.render(w, r, http.StatusOK, "confirm", ss, v)
		return
	}
	done, skipped := 0, 0
	for _, e := range entries {
		var err error
		if action == "delete" {
			err = s.opts.Store.DeleteQueueEntry(r.Context(), e.ID)
		} else if e.Status == storage.QueueFailed || e.Status == storage.QueueSent {
			_, err = s.opts.Store.ResendQueueEntry(r.Context(), e.ID, time.Now())
		} else {
			skipped++
			continue
		}
		switch {
		case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrInvalid):
			skipped++ // changed meanwhile
			continue
		case err != nil:
			s.internal(w, r, err)
			return
		}
		done++
		s.log.Info("web: queue entry "+action, "user", ss.Address, "id", e.ID)
	}
	extra := url.Values{}
	key := "resent"
	if action == "delete" {
		key = "deleted"
	}
	extra.Set(key, strconv.Itoa(done))
	if skipped > 0 {
		extra.Set("skipped", strconv.Itoa(skipped))
	}
	to := backTo(r, extra)
	if action == "resend" {
		// Resent entries leave the Failed view: show every type, so the
		// user watches them go out.
		u, _ := url.Parse(to)
		l := u.Query()
		l.Del("status")
		to = "/queue?" + l.Encode()
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// maxBodyShown bounds the body shown on an entry's page.
const maxBodyShown = 256 << 10

type entryView struct {
	E       *storage.QueueEntry
	Row     queueRow
	Body    string
	BodyCut bool
}

func (s *Server) queueEntryPage(w http.ResponseWriter, r *http.Request, ss *session) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e, err := s.opts.Store.QueueEntry(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		http.Error(w, fmt.Sprintf("Queue entry %d does not exist (any more).", id), http.StatusNotFound)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if !ss.canAct(e) {
		http.Error(w, fmt.Sprintf("Queue entry %d is not yours.", id), http.StatusForbidden)
		return
	}
	t := texts(r)
	all := make([]column, len(queueColumns))
	for i, c := range queueColumns {
		all[i] = column{Key: c, Label: t["col_"+c]}
	}
	v := &entryView{E: e, Row: queueRowOf(e, all, t), Body: e.Body}
	if len(v.Body) > maxBodyShown {
		v.Body, v.BodyCut = v.Body[:maxBodyShown], true
	}
	s.render(w, r, http.StatusOK, "entry", ss, v)
}
