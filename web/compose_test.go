package web

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/smtpd"
	"github.com/pochta/pochta/storage"
)

// withSubmission sends through a real smtpd.Server on the same store.
func withSubmission(t *testing.T, queue bool) func(*Options) {
	return func(o *Options) {
		srv, err := smtpd.New(smtpd.Options{Hostname: "mail.example.com", Domains: []string{"example.com"}, Store: o.Store,
			QueueEnabled: queue, MaxMessageSize: 64 << 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		o.Submit = srv.Submit
	}
}

func TestSendAndDraftsAuthorisation(t *testing.T) {
	e := newEnv(t, withSubmission(t, false))
	body := `{"to":["bob@example.com"],"subject":"s","text":"t","importance":"normal"}`
	a := e.signIn(alice)
	noCSRF := e.signIn(alice)
	noCSRF.csrf = ""
	for _, path := range []string{"/api/v1/send", "/api/v1/drafts"} {
		if resp := e.anonymous().sendJSON("POST", path, body); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous POST %s: %s", path, resp.Status)
		}
		if resp := noCSRF.sendJSON("POST", path, body); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without CSRF: %s", path, resp.Status)
		}
		for _, bad := range []string{`{"to":["bob@example.com"],"importance":"urgent"}`, `{"to":["a@b, c@d"]}`, `{"subject":"a\nBcc: x@y"}`, `{"nope":1}`} {
			if resp := a.sendJSON("POST", path, bad); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("POST %s %s: %s, want 400", path, bad, resp.Status)
			}
		}
	}
	if st, _ := e.store.MailboxStatus(t.Context(), bob, storage.Inbox); st.Messages != 0 {
		t.Fatalf("refused requests delivered %d messages", st.Messages)
	}
	// Another user's draft_uid names a message of their own Drafts, never alice's.
	var d struct{ UID uint32 }
	resp := a.sendJSON("POST", "/api/v1/drafts", body)
	json.NewDecoder(resp.Body).Decode(&d)
	b := e.signIn(bob)
	if resp := b.sendJSON("POST", "/api/v1/drafts", fmt.Sprintf(`{"subject":"bob's","draft_uid":%d}`, d.UID)); resp.StatusCode != 200 {
		t.Fatalf("bob's draft: %s", resp.Status)
	}
	if st, _ := e.store.MailboxStatus(t.Context(), alice, storage.Drafts); st.Messages != 1 {
		t.Fatalf("alice's Drafts after bob named her draft's UID: %d messages", st.Messages)
	}
}

func TestSendGoesThroughSubmission(t *testing.T) {
	e := newEnv(t, withSubmission(t, false))
	a := e.signIn(alice)
	resp := a.sendJSON("POST", "/api/v1/send", `{"to":["bob@example.com"],"cc":["admin@example.com"],"bcc":["alice@example.com"],"subject":"Привет <b>","text":"line one\nline two","importance":"high"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("send: %s %s", resp.Status, readBody(t, resp))
	}
	b := e.signIn(bob)
	var inbox []messageJSON
	b.getJSON("/api/v1/messages?mailbox=INBOX", &inbox)
	if len(inbox) != 1 || inbox[0].Subject != "Привет <b>" || !inbox[0].Important || inbox[0].From != alice {
		t.Fatalf("bob's INBOX: %+v", inbox)
	}
	var m messageBodyJSON
	b.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX", inbox[0].UID), &m)
	if m.Text != "line one\r\nline two\r\n" {
		t.Errorf("text %q", m.Text)
	}
	mb, _ := e.store.Mailbox(t.Context(), bob, storage.Inbox)
	msgs, _ := e.store.Messages(t.Context(), bob, mb.ID, []imap.UID{imap.UID(inbox[0].UID)}, storage.LoadOptions{Body: true})
	if raw := string(msgs[0].Body); !strings.Contains(raw, "Received: from web") || strings.Contains(raw, "Bcc:") || !strings.Contains(raw, "Message-ID:") {
		t.Errorf("bob's copy was not edited by submission:\n%s", raw)
	}
	var sent []messageJSON
	a.getJSON("/api/v1/messages?mailbox=Sent", &sent)
	if len(sent) != 1 || sent[0].NotDelivered == nil || !slices.Equal(*sent[0].NotDelivered, []string{admin, alice}) { // bob has read his
		t.Fatalf("alice's Sent: %+v %v", sent, *sent[0].NotDelivered)
	}

	// The SMTP refusals, with SMTP's sentences.
	for body, want := range map[string]string{
		`{"to":["nobody@example.com"],"subject":"x","text":"x"}`:                                "no such user",
		`{"to":["someone@remote.test"],"subject":"x","text":"x"}`:                               "relay",
		`{"to":["bob@example.com"],"subject":"x","text":"` + strings.Repeat("x", 70<<10) + `"}`: "size",
	} {
		resp := a.sendJSON("POST", "/api/v1/send", body)
		got := readBody(t, resp)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(strings.ToLower(got), want) {
			t.Errorf("send %.60s: %s %s", body, resp.Status, got)
		}
	}
	b.getJSON("/api/v1/messages?mailbox=INBOX", &inbox)
	if len(inbox) != 1 {
		t.Fatalf("refused sends reached bob: %+v", inbox)
	}
}

func TestDraftSavedReplacedAndLeavesWhenSent(t *testing.T) {
	e := newEnv(t, withSubmission(t, false))
	a := e.signIn(alice)
	var d struct{ UID uint32 }
	resp := a.sendJSON("POST", "/api/v1/drafts", `{"to":["bob@example.com"],"subject":"first","text":"draft"}`)
	json.NewDecoder(resp.Body).Decode(&d)
	resp = a.sendJSON("POST", "/api/v1/drafts", fmt.Sprintf(`{"to":["bob@example.com"],"subject":"second","text":"draft","draft_uid":%d}`, d.UID))
	json.NewDecoder(resp.Body).Decode(&d)
	var drafts []messageJSON
	a.getJSON("/api/v1/messages?mailbox=Drafts", &drafts)
	if len(drafts) != 1 || drafts[0].Subject != "second" || drafts[0].UID != d.UID || !slices.Equal(drafts[0].To, []string{bob}) {
		t.Fatalf("Drafts: %+v (uid %d)", drafts, d.UID)
	}
	resp = a.sendJSON("POST", "/api/v1/send", fmt.Sprintf(`{"to":["bob@example.com"],"subject":"second","text":"final","draft_uid":%d}`, d.UID))
	if resp.StatusCode != 200 {
		t.Fatalf("send: %s", resp.Status)
	}
	a.getJSON("/api/v1/messages?mailbox=Drafts", &drafts)
	if len(drafts) != 0 {
		t.Fatalf("the sent draft stays: %+v", drafts)
	}
}
