package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// TestBrowserMailPage is the seed's Mail tab in a real browser: INBOX bold
// with its count, opening a message reads it (and settles the sender's
// "Not delivered"), compose and send with Ctrl+Enter, and the two arrival
// notices: the modal for high importance, the pop-up for normal mail.
func TestBrowserMailPage(t *testing.T) {
	e := newEnv(t, withSubmission(t, false))
	e.deliverLocal(bob, "Lunch <b>today</b>", alice)

	ctx, problems := browserCtx(t)
	fail := func(what string, err error) {
		t.Helper()
		screenshot(t, ctx, "mail-failed.png")
		t.Fatalf("%s: %v (browser said: %q)", what, err, problems())
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(e.url+"/mail"),
		chromedp.WaitVisible(`#login-form`),
		chromedp.SendKeys(`#address`, alice),
		chromedp.SendKeys(`#password`, pass),
		chromedp.Submit(`#login-form`),
		chromedp.WaitVisible(`#folders a.unread[data-mailbox="INBOX"]`),
		chromedp.WaitVisible(`#messages tr.unread[data-uid]`),
	)
	if err != nil {
		fail("sign in and see INBOX", err)
	}
	inbox, err := chromedp.Run(ctx, chromedp.Text(`#folders a[data-mailbox="INBOX"]`))
	if err != nil || inbox != "INBOX (1)" {
		t.Errorf("the INBOX folder reads %q (%v), want INBOX (1)", inbox, err)
	}
	screenshot(t, ctx, "mail-inbox.png")

	notDelivered := func() []string {
		list, err := e.store.SentStatus(t.Context(), bob)
		if err != nil || len(list) != 1 {
			t.Fatalf("bob's tracking: %v %v", list, err)
		}
		var out []string
		for _, r := range list[0].Recipients {
			if r.Pending() {
				out = append(out, r.Address)
			}
		}
		return out
	}
	if nd := notDelivered(); len(nd) != 1 {
		t.Fatalf("before alice reads, bob's not delivered: %v", nd)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(`#messages tr[data-uid] a.open`),
		chromedp.WaitVisible(`#reader h2`),
	)
	if err != nil {
		fail("open the message", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#folders a[data-mailbox="INBOX"]').textContent === "INBOX (0)" && !document.querySelector("#messages tr.unread")`)); err != nil {
		fail("the message turns read", err)
	}
	if title, _ := chromedp.Run(ctx, chromedp.Text(`#reader h2`)); title != "Lunch <b>today</b>" {
		t.Errorf("the reading pane's title is %q", title)
	}
	if nd := notDelivered(); len(nd) != 0 {
		t.Errorf("after alice read, bob's not delivered: %v", nd)
	}

	err = chromedp.Do(ctx,
		chromedp.Click(`[data-action="compose"]`),
		chromedp.WaitVisible(`#compose input[name="to"]`),
		chromedp.SendKeys(`#compose input[name="to"]`, bob),
		chromedp.SendKeys(`#compose input[name="subject"]`, "Re: lunch"),
		chromedp.SendKeys(`#compose textarea[name="text"]`, "Yes, at noon."),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.WaitNotVisible(`#compose`),
		chromedp.WaitVisible(`#notice-popup`),
	)
	if err != nil {
		fail("compose and send with Ctrl+Enter", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := e.store.MailboxStatus(t.Context(), bob, storage.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		if st.Messages == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's INBOX has %d messages 5 s after Ctrl+Enter", st.Messages)
		}
		time.Sleep(20 * time.Millisecond)
	}

	arrive := func(subject string, important bool) {
		t.Helper()
		m := &storage.NewMessage{Raw: []byte("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: " + subject + "\r\n\r\nNews\r\n")}
		if important {
			m.Flags = []imap.Flag{"$Important"}
		}
		if _, err := e.store.Append(context.Background(), alice, storage.Inbox, m); err != nil {
			t.Fatal(err)
		}
	}
	arrive("Server room on fire", true)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("notice-modal").open && document.getElementById("notice-modal").textContent.includes("Server room on fire")`)); err != nil {
		fail("the modal for a high-importance message", err)
	}
	screenshot(t, ctx, "mail-important.png")
	if err := chromedp.Do(ctx, chromedp.Click(`#notice-modal button`), chromedp.WaitNotVisible(`#notice-modal`)); err != nil {
		fail("closing the modal", err)
	}
	arrive("Coffee machine fixed", false)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const p = document.querySelector('[role="status"]'); return !p.hidden && p.textContent.includes("Coffee machine fixed") && !document.getElementById("notice-modal").open; })()`)); err != nil {
		fail("the pop-up for a normal message", err)
	}
	screenshot(t, ctx, "mail-popup.png")
	// The reading pane goes to the right, and stays there for this user.
	err = chromedp.Do(ctx,
		chromedp.Click(`#pane-toggle`),
		chromedp.WaitVisible(`#mail.pane-right`),
		chromedp.Navigate(e.url+"/mail"),
		chromedp.WaitVisible(`#mail.pane-right #folders a[data-mailbox="INBOX"]`),
	)
	if err != nil {
		fail("switching the reading pane to the right", err)
	}
	if prefs, _ := e.store.WebPrefs(t.Context(), alice); prefs.MailPane != "right" {
		t.Errorf("the pane choice is not kept on the server: %+v", prefs)
	}
	order, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#folders a")).map((a) => a.dataset.mailbox).join(",")`))
	if err != nil || order != "INBOX,Sent,Drafts,Trash" {
		t.Errorf("folders in the order %q (%v)", order, err)
	}
	screenshot(t, ctx, "mail-pane-right.png")
	if p := problems(); len(p) != 0 {
		t.Errorf("the browser reported: %q", strings.Join(p, "; "))
	}
}

// TestBrowserDraftsIntervalAndHostileMail: save a draft, reopen it from
// Drafts and send it (it leaves Drafts); change the check interval (stored
// on the server); open hostile HTML mail and see nothing of it run.
func TestBrowserDraftsIntervalAndHostileMail(t *testing.T) {
	e := newEnv(t, withSubmission(t, false))
	e.appendRaw(alice, storage.Inbox, strings.Replace(hostileHTML, `<script>alert(1)</script>`, `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`, 1))
	ctx, problems := browserCtx(t)
	fail := func(what string, err error) {
		t.Helper()
		screenshot(t, ctx, "mail-failed.png")
		t.Fatalf("%s: %v (browser said: %q)", what, err, problems())
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(e.url+"/mail"),
		chromedp.WaitVisible(`#login-form`),
		chromedp.SendKeys(`#address`, alice),
		chromedp.SendKeys(`#password`, pass),
		chromedp.Submit(`#login-form`),
		chromedp.WaitVisible(`#messages tr[data-uid] a.open`),
		chromedp.Click(`#messages tr[data-uid] a.open`),
		chromedp.WaitVisible(`#reader .html-body`),
	)
	if err != nil {
		fail("open the hostile message", err)
	}
	ran, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned !== undefined || document.querySelector("#reader script, #reader [onerror], #reader a[href^='javascript']") !== null`))
	if err != nil || ran {
		t.Errorf("hostile mail: its script, handler or javascript: link is in the page (%v)", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`#reader button`)); err != nil {
		fail("the Show remote images button", err)
	}
	screenshot(t, ctx, "mail-hostile.png")

	err = chromedp.Do(ctx,
		chromedp.Click(`[data-action="compose"]`),
		chromedp.SendKeys(`#compose input[name="to"]`, bob),
		chromedp.SendKeys(`#compose input[name="subject"]`, "Plan"),
		chromedp.SendKeys(`#compose textarea[name="text"]`, "first thoughts"),
		chromedp.Click(`#save-draft`),
		chromedp.WaitNotVisible(`#compose`),
	)
	// The folders and the list are re-rendered on every event (the saved
	// draft sends one), so each click finds its node and clicks it at once.
	if err == nil {
		err = clickInPage(ctx, `#folders a[data-mailbox="Drafts"]`)
	}
	if err == nil {
		err = clickInPage(ctx, `#messages[data-mailbox="Drafts"] tr[data-uid] a.open`)
	}
	if err == nil {
		err = chromedp.Do(ctx, chromedp.WaitVisible(`#compose input[name="subject"]`))
	}
	if err != nil {
		fail("save and reopen a draft", err)
	}
	subject, _ := chromedp.Run(ctx, chromedp.Value(`#compose input[name="subject"]`))
	text, _ := chromedp.Run(ctx, chromedp.Value(`#compose textarea[name="text"]`))
	if subject != "Plan" || text != "first thoughts" {
		t.Errorf("the reopened draft: subject %q, text %q", subject, text)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(`#send`),
		chromedp.WaitNotVisible(`#compose`),
		chromedp.WaitVisible(`#messages[data-mailbox="Drafts"] tr.empty`),
	)
	if err != nil {
		fail("send the draft", err)
	}
	if st, _ := e.store.MailboxStatus(t.Context(), bob, storage.Inbox); st.Messages != 1 {
		t.Errorf("bob got %d messages from the draft, want 1", st.Messages)
	}
	if st, _ := e.store.MailboxStatus(t.Context(), alice, storage.Drafts); st.Messages != 0 {
		t.Errorf("Drafts keeps %d messages after sending the draft", st.Messages)
	}

	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const i = document.getElementById("poll-interval"); i.value = "120"; i.dispatchEvent(new Event("change")); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, err := e.store.User(t.Context(), alice)
		if err != nil {
			t.Fatal(err)
		}
		if u.Settings.PollInterval == 2*time.Minute {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the interval on the server is %v 5 s after changing it to 120 s", u.Settings.PollInterval)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := problems(); len(p) != 0 {
		t.Errorf("the browser reported: %q", strings.Join(p, "; "))
	}
}
