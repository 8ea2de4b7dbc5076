package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/pochta/pochta/storage"
)

// manyAttachments is a message with n attachments with long names and an
// enormous subject.
func manyAttachments(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: mallory@evil.test\r\nTo: alice@example.com\r\nSubject: %s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n", strings.Repeat("Huge", 2000))
	b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nmany files\r\n")
	for i := range n {
		fmt.Fprintf(&b, "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"%d-%s.bin\"\r\n\r\nx\r\n", i, strings.Repeat("n", 300))
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

// TestBrowserAttachmentsAndTheFailedLink: a message with 1,000 attachments
// and an enormous subject leaves the page usable; compose attaches a file,
// saves the draft, reopens it with the file kept, adds another and sends;
// in Sent, the recipient the queue gave up on links to that queue entry.
func TestBrowserAttachmentsAndTheFailedLink(t *testing.T) {
	e := newEnv(t, withLimits(t, 1<<20))
	failedID := e.queue(alice, "Bounced report", storage.QueueFailed)
	e.deliverLocal(bob, "Lunch on Friday?", alice)
	bc := e.signIn(bob)
	if resp := bc.postForm("/api/v1/send", map[string][]string{"to": {alice}, "subject": {"Quarterly figures"}, "importance": {"high"},
		"text": {"Hi Alice,\n\nthe figures for the quarter are attached; the totals are on the second sheet.\n\nBob"}},
		upload{"q4-figures.csv", "text/csv", []byte("month,total\nOct,120\nNov,135\nDec,150\n")}); resp.StatusCode != 200 {
		t.Fatalf("bob's message: %s", resp.Status)
	}
	dir := t.TempDir()
	first, second := filepath.Join(dir, "notes.txt"), filepath.Join(dir, "отчёт.csv")
	os.WriteFile(first, []byte("first file"), 0o644)
	os.WriteFile(second, []byte("a,b\n1,2\n"), 0o644)

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
	)
	if err == nil {
		err = clickInPage(ctx, `#messages tr[data-uid] a.open`) // the newest: bob's figures
	}
	if err == nil {
		err = chromedp.Do(ctx, chromedp.WaitVisible(`#reader ul.attachments li`))
	}
	if err != nil {
		fail("open a message with an attachment", err)
	}
	screenshot(t, ctx, "mail-reading.png")

	// Hostile mail arrives while the page is open.
	e.appendRaw(alice, storage.Inbox, manyAttachments(1000))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll("#messages tr[data-uid]").length === 3`)); err != nil {
		fail("the new message in the list", err)
	}
	if err := clickInPage(ctx, `#messages tr[data-uid] a.open`); err != nil {
		fail("open the message with 1,000 attachments", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitReady(`#reader ul.attachments li:nth-child(1000)`)); err != nil {
		fail("open the message with 1,000 attachments", err)
	}
	wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 2`))
	if err != nil || wide {
		t.Errorf("the page scrolls sideways with a 8,000-character subject and 1,000 long names (%v)", err)
	}
	// The subject is clamped in the list and scrolls in its own box in the
	// reading pane, so the attachments stay within reach.
	heights, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[document.querySelector("#messages tr[data-uid]").getBoundingClientRect().height, document.querySelector("#reader h2").getBoundingClientRect().height]`))
	if err != nil || len(heights) != 2 || heights[0] > 100 || heights[1] > 150 {
		t.Errorf("the enormous subject takes %v px in the list and the reading pane (%v), want under 100 and 150", heights, err)
	}
	screenshot(t, ctx, "mail-many-attachments.png")

	err = chromedp.Do(ctx,
		chromedp.Click(`[data-action="compose"]`),
		chromedp.SendKeys(`#compose input[name="to"]`, bob),
		chromedp.SendKeys(`#compose input[name="subject"]`, "With files"),
		chromedp.SendKeys(`#compose textarea[name="text"]`, "two files"),
		chromedp.SetUploadFiles(`#compose input[name="attachment"]`, []string{first}),
		chromedp.Click(`#save-draft`),
		chromedp.WaitNotVisible(`#compose`),
	)
	if err == nil {
		err = clickInPage(ctx, `#folders a[data-mailbox="Drafts"]`)
	}
	if err == nil {
		err = clickInPage(ctx, `#messages[data-mailbox="Drafts"] tr[data-uid] a.open`)
	}
	if err == nil {
		err = chromedp.Do(ctx, chromedp.WaitVisible(`#kept-attachments input[name="keep_attachments"]`))
	}
	if err != nil {
		fail("attach a file, save the draft and reopen it", err)
	}
	kept, _ := chromedp.Run(ctx, chromedp.Text(`#kept-attachments`))
	if !strings.Contains(kept, "notes.txt") {
		t.Errorf("the reopened draft lists %q, want notes.txt kept", kept)
	}
	screenshot(t, ctx, "mail-compose-attachments.png")
	err = chromedp.Do(ctx,
		chromedp.SetUploadFiles(`#compose input[name="attachment"]`, []string{second}),
		chromedp.Click(`#send`),
		chromedp.WaitNotVisible(`#compose`),
		chromedp.WaitVisible(`#messages[data-mailbox="Drafts"] tr.empty`),
	)
	if err != nil {
		fail("send the draft with a second file", err)
	}
	b := e.signIn(bob)
	m := openOnly(t, b, "INBOX")
	if len(m.Attachments) != 2 || m.Attachments[0].Name != "notes.txt" || m.Attachments[1].Name != "отчёт.csv" ||
		string(download(t, b, "INBOX", m.UID, 0)) != "first file" || string(download(t, b, "INBOX", m.UID, 1)) != "a,b\n1,2\n" {
		t.Fatalf("bob received %q with %+v", m.Subject, m.Attachments)
	}

	// The list reloads on every event the send causes: find and click the
	// link in one step in the page, so a row replaced meanwhile is no
	// matter.
	const link = `#messages[data-mailbox="Sent"] a.queue-link`
	if err := clickInPage(ctx, `#folders a[data-mailbox="Sent"]`); err != nil {
		fail("open Sent", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, link))); err != nil {
		fail("the failed recipient's link in Sent", err)
	}
	screenshot(t, ctx, "mail-sent-failed.png")
	if err := clickInPage(ctx, link); err != nil {
		fail("click the link", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(fmt.Sprintf(`#queue tr[data-id="%d"]`, failedID))); err != nil {
		fail("follow the link to the queue entry", err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#queue tr[data-id]").length`))
	if err != nil || rows != 1 {
		t.Errorf("the linked queue page shows %d entries (%v), want the failed one only", rows, err)
	}
	if p := problems(); len(p) != 0 {
		t.Errorf("the browser reported: %q", strings.Join(p, "; "))
	}
}

// clickInPage waits for sel and clicks it in one step inside the page: the
// mail page re-renders its folders and list on every event, so a node
// found by one command may be replaced before the next clicks it.
func clickInPage(ctx context.Context, sel string) error {
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true; })()`, sel)))
	return err
}
