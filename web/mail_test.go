package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pochta/pochta/storage"
)

// deliverLocal submits a message from sender to local recipients as smtpd
// would: a Sent copy, read tracking and an INBOX copy for each.
func (e *testEnv) deliverLocal(sender, subject string, to ...string) {
	e.t.Helper()
	mid := fmt.Sprintf("<%s.%d@example.com>", strings.ReplaceAll(subject, " ", "-"), len(subject))
	raw := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n\r\nHello\r\n", sender, strings.Join(to, ", "), subject, mid)
	d := &storage.Delivery{Sender: sender, From: sender, Source: storage.SourceUser,
		SentCopy: &storage.NewMessage{Raw: []byte(raw)}, Recipients: to, Copy: &storage.NewMessage{Raw: []byte(raw)},
		MessageID: mid, Subject: subject}
	if _, err := e.store.Deliver(context.Background(), d); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) appendRaw(user, box, raw string) uint32 {
	e.t.Helper()
	a, err := e.store.Append(context.Background(), user, box, &storage.NewMessage{Raw: []byte(raw)})
	if err != nil {
		e.t.Fatal(err)
	}
	return uint32(a.UID)
}

func mailboxNamed(t *testing.T, c *client, name string) mailboxJSON {
	t.Helper()
	var list []mailboxJSON
	c.getJSON("/api/v1/mailboxes", &list)
	for _, b := range list {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no mailbox %s in %+v", name, list)
	return mailboxJSON{}
}

func TestMailAPIAuthorisation(t *testing.T) {
	e := newEnv(t, nil)
	uid := e.appendRaw(alice, storage.Inbox, "From: bob@example.com\r\nSubject: for alice only\r\n\r\nsecret\r\n")
	e.appendRaw(alice, storage.Inbox, "From: bob@example.com\r\nSubject: att\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf; name=x.pdf\r\n\r\nPDF\r\n--b--\r\n")
	paths := []string{
		"/api/v1/mailboxes",
		"/api/v1/messages?mailbox=INBOX",
		fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX", uid),
		fmt.Sprintf("/api/v1/messages/%d/attachments/0?mailbox=INBOX", uid+1),
	}
	users := map[string]*client{"alice": e.signIn(alice), "bob": e.signIn(bob), "anonymous": e.anonymous()}
	for _, p := range paths {
		for who, want := range map[string]int{"alice": 200, "anonymous": 401} {
			if resp := users[who].get(p); resp.StatusCode != want {
				t.Errorf("%s GET %s: %s, want %d", who, p, resp.Status, want)
			}
		}
	}
	// Bob asks for alice's UIDs: his own INBOX has none of them.
	for _, p := range paths[2:] {
		if resp := users["bob"].get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob GET %s: %s, want 404", p, resp.Status)
		}
	}
	var list []messageJSON
	users["bob"].getJSON("/api/v1/messages?mailbox=INBOX", &list)
	if len(list) != 0 {
		t.Errorf("bob's INBOX lists %+v", list)
	}
	if resp := users["alice"].get("/api/v1/messages?mailbox=Nowhere"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown mailbox: %s", resp.Status)
	}
	for _, bad := range []string{"/api/v1/messages", "/api/v1/messages?mailbox=..", "/api/v1/messages?mailbox=a//b", "/api/v1/messages?mailbox=INBOX&limit=0", "/api/v1/messages?mailbox=INBOX&before=x", "/api/v1/messages/abc?mailbox=INBOX"} {
		if resp := users["alice"].get(bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %s, want 400", bad, resp.Status)
		}
	}
}

func TestMessagesNewestFirstInPages(t *testing.T) {
	e := newEnv(t, nil)
	for i := 1; i <= 120; i++ {
		e.appendRaw(alice, storage.Inbox, fmt.Sprintf("From: bob@example.com\r\nSubject: n%d\r\n\r\nx\r\n", i))
	}
	c := e.signIn(alice)
	var got []string
	path := "/api/v1/messages?mailbox=INBOX&limit=50"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		resp := c.get(path)
		var list []messageJSON
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			got = append(got, m.Subject)
		}
		path = ""
		if next := resp.Header.Get("X-Next-Before"); next != "" {
			path = "/api/v1/messages?mailbox=INBOX&limit=50&before=" + next
		}
	}
	if len(got) != 120 || got[0] != "n120" || got[49] != "n71" || got[50] != "n70" || got[119] != "n1" {
		t.Fatalf("listing: %d messages, %v ... %v", len(got), got[:min(3, len(got))], got[max(0, len(got)-3):])
	}
}

func TestOpeningMarksReadAndSettlesNotDelivered(t *testing.T) {
	e := newEnv(t, nil)
	e.deliverLocal(alice, "lunch", bob, admin)
	a, b := e.signIn(alice), e.signIn(bob)

	if s := mailboxNamed(t, a, storage.Sent); s.PendingSent != 1 || s.Messages != 1 {
		t.Fatalf("alice's Sent: %+v, want 1 message, pending_sent 1", s)
	}
	if in := mailboxNamed(t, b, storage.Inbox); in.Unseen != 1 {
		t.Fatalf("bob's INBOX: %+v, want 1 unseen", in)
	}
	notDelivered := func() []string {
		var sent []messageJSON
		a.getJSON("/api/v1/messages?mailbox=Sent", &sent)
		if len(sent) != 1 || sent[0].NotDelivered == nil {
			t.Fatalf("alice's Sent: %+v", sent)
		}
		return *sent[0].NotDelivered
	}
	if nd := notDelivered(); strings.Join(nd, ",") != bob+","+admin {
		t.Fatalf("not_delivered %v, want bob and admin", nd)
	}
	var inbox []messageJSON
	b.getJSON("/api/v1/messages?mailbox=INBOX", &inbox)
	if len(inbox) != 1 || inbox[0].Seen || inbox[0].NotDelivered != nil {
		t.Fatalf("bob's INBOX: %+v", inbox)
	}
	var m messageBodyJSON
	b.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX", inbox[0].UID), &m)
	if !m.Seen || !strings.Contains(m.Text, "Hello") || m.Subject != "lunch" || m.From != alice {
		t.Fatalf("bob's message: %+v", m)
	}
	if in := mailboxNamed(t, b, storage.Inbox); in.Unseen != 0 {
		t.Fatalf("bob's INBOX after reading: %+v", in)
	}
	if nd := notDelivered(); len(nd) != 1 || nd[0] != admin {
		t.Fatalf("not_delivered after bob read: %v, want admin only", nd)
	}
	c := e.signIn(admin)
	var ain []messageJSON
	c.getJSON("/api/v1/messages?mailbox=INBOX", &ain)
	c.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX", ain[0].UID), &m)
	if nd := notDelivered(); nd == nil || len(nd) != 0 {
		t.Fatalf("not_delivered after everyone read: %v, want []", nd)
	}
	if s := mailboxNamed(t, a, storage.Sent); s.PendingSent != 0 {
		t.Fatalf("alice's Sent after everyone read: %+v", s)
	}
}

const hostileHTML = "From: mallory@evil.test\r\nTo: alice@example.com\r\nSubject: hostile\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
	`<p style="position:fixed;top:0">hi</p><script>alert(1)</script>` +
	`<img src="x" onerror="alert(2)"><a href="javascript:alert(3)">click</a>` +
	`<img src="https://tracker.evil.test/pixel.gif"><img src="/api/v1/messages/1?mailbox=INBOX">` +
	`<a href="https://ok.test/">ok</a>` + "\r\n" +
	"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nattached words\r\n" +
	"--b--\r\n"

func TestMessageHTMLSanitisedAndImagesBlocked(t *testing.T) {
	e := newEnv(t, nil)
	uid := e.appendRaw(alice, storage.Inbox, hostileHTML)
	c := e.signIn(alice)
	var m messageBodyJSON
	c.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX", uid), &m)
	for _, bad := range []string{"<script", "alert(", "onerror", "javascript:", "tracker.evil.test", "/api/v1/", "style="} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("sanitised HTML keeps %q: %s", bad, m.HTML)
		}
	}
	if !strings.Contains(m.HTML, "https://ok.test/") || !strings.Contains(m.HTML, "hi") {
		t.Errorf("sanitised HTML lost the harmless part: %s", m.HTML)
	}
	if m.RemoteImages != 1 {
		t.Errorf("remote_images %d, want 1", m.RemoteImages)
	}
	c.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX&images=allow", uid), &m)
	if !strings.Contains(m.HTML, "https://tracker.evil.test/pixel.gif") || strings.Contains(m.HTML, "/api/v1/") || strings.Contains(m.HTML, "<script") {
		t.Errorf("with images allowed: %s", m.HTML)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Name != "notes.txt" || m.Attachments[0].Type != "text/plain" || m.Attachments[0].Size != int64(len("attached words")) {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	resp := c.get(fmt.Sprintf("/api/v1/messages/%d/attachments/0?mailbox=INBOX", uid))
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "attached words" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("download: %s %q %v", resp.Status, body, resp.Header)
	}
	if resp := c.get(fmt.Sprintf("/api/v1/messages/%d/attachments/1?mailbox=INBOX", uid)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a missing attachment: %s", resp.Status)
	}
}

func TestMailPaneKeptPerUser(t *testing.T) {
	e := newEnv(t, nil)
	a := e.signIn(alice)
	if resp := a.form("/mail/pane", map[string][]string{"pane": {"right"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /mail/pane: %s", resp.Status)
	}
	if body := readBody(t, a.get("/mail")); !strings.Contains(body, `class="mail pane-right"`) {
		t.Errorf("the page after choosing right does not show the pane right")
	}
	// Choosing queue columns keeps the pane choice.
	a.form("/queue/columns", map[string][]string{"col": {"date"}})
	if prefs, _ := e.store.WebPrefs(t.Context(), alice); prefs.MailPane != "right" || !prefs.QueueColumnsSet {
		t.Errorf("prefs after choosing columns: %+v", prefs)
	}
	if csp := a.get("/mail").Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' https: data:") || !strings.Contains(csp, "script-src 'self';") {
		t.Errorf("/mail's CSP %q: want remote images possible (the API strips them until allowed), scripts from the site only", csp)
	}
	if csp := a.get("/queue").Header.Get("Content-Security-Policy"); strings.Contains(csp, "https:") {
		t.Errorf("/queue's CSP allows remote images: %q", csp)
	}
	if body := readBody(t, e.signIn(bob).get("/mail")); strings.Contains(body, "pane-right") {
		t.Errorf("bob's page follows alice's choice")
	}
	noCSRF := e.signIn(alice)
	noCSRF.csrf = ""
	if resp := noCSRF.form("/mail/pane", map[string][]string{"pane": {"below"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /mail/pane without CSRF: %s", resp.Status)
	}
	if resp := a.form("/mail/pane", map[string][]string{"pane": {"left"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("pane=left: %s", resp.Status)
	}
}
