package web

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/pochta/pochta/internal/testrelay"
	"github.com/pochta/pochta/queue"
	"github.com/pochta/pochta/storage"
)

// chromium finds Debian's chromium. A browser test that cannot start it
// fails: a skipped browser test proves nothing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed (apt-get install chromium): the browser tests need it")
	return ""
}

// browserCtx starts a headless Chromium for the test, and collects what it
// reports as errors: console errors, uncaught exceptions, failed loads.
func browserCtx(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors", true), // the test server's own certificate
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)

	var mu sync.Mutex
	var problems []string
	err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, "console."+string(ev.Type)+": "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, fmt.Sprintf("exception: %s %s", ev.ExceptionDetails.Text, ev.ExceptionDetails.URL))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				problems = append(problems, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		case *page.EventJavascriptDialogOpening:
			// The page asks before it acts; the user says yes.
			go chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestBrowserResendsAFailedEntryAndWatchesItGoOut is the seed's scenario in
// a real browser: sign in through the form, filter Failed, tag the entry,
// resend it (confirming), and watch it become Sent against a live relay.
func TestBrowserResendsAFailedEntryAndWatchesItGoOut(t *testing.T) {
	e := newEnv(t, nil)
	// Settled entries first: the queue leaves those alone.
	e.queue(alice, "Weekly <b>status</b>", storage.QueueSent)
	e.queue(bob, "bob's private mail", storage.QueueFailed)
	e.queue("", "system notice", storage.QueueSent)
	relay := testrelay.Start(t)
	relay.Refuse(550, "mailbox unavailable")
	q, err := queue.New(queue.Options{
		Store: e.store, Relay: relay.Addr, RelayTLS: queue.TLSNone,
		Hostname: "mail.example.com", Postmaster: "postmaster@example.com", Admins: []string{admin},
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, HealthCheckInterval: 50 * time.Millisecond,
		// Long enough for the held DATA below: a timeout there would send twice.
		DialTimeout: 5 * time.Second, CommandTimeout: 30 * time.Second, DataTimeout: 30 * time.Second,
		Location: time.UTC, Logger: e.web.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	t.Cleanup(relay.Release) // runs first: a failing test leaves no DATA held

	id := e.queue(alice, "Quarterly report", storage.QueueOutbox)
	// The relay refuses it for good: failed, with an Undeliverable alert.
	deadline := time.Now().Add(10 * time.Second)
	for {
		en, err := e.store.QueueEntry(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if en.Status == storage.QueueFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry still %s after 10s", en.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	relay.Accept()

	ctx, problems := browserCtx(t)
	row := fmt.Sprintf(`#queue tr[data-id="%d"]`, id)
	err = chromedp.Do(ctx,
		chromedp.Navigate(e.url+"/queue"),
		chromedp.WaitVisible(`#login-form`),
		chromedp.SendKeys(`#address`, alice),
		chromedp.SendKeys(`#password`, pass),
		chromedp.Submit(`#login-form`),
		chromedp.WaitVisible(`#queue`),
	)
	if err == nil {
		// Choosing Failed as a user does (the change event): the page's
		// script applies the filter at once. Exactly one navigation follows.
		_, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.getElementById("filter-status"); s.value = "failed"; s.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`))
	}
	if err == nil {
		// The unfiltered page shows the row too: wait for the filtered
		// page, whose option carries the selected attribute.
		err = chromedp.Do(ctx,
			chromedp.WaitReady(`#filter-status option[value="failed"][selected]`),
			chromedp.WaitVisible(row+`[data-status="failed"]`))
	}
	if err != nil {
		t.Fatalf("sign in and filter Failed: %v (browser said: %q)", err, problems())
	}
	alerts, err := chromedp.Run(ctx, chromedp.Text(`#alert-count`))
	if err != nil {
		t.Fatal(err)
	}
	failedRows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#queue tbody tr[data-id]').length`))
	if err != nil {
		t.Fatal(err)
	}
	bobRows, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.body.innerText.includes("bob's private mail")`))
	if err != nil {
		t.Fatal(err)
	}
	if failedRows != 1 || bobRows {
		t.Errorf("the Failed view shows %d rows (want alice's one), bob's mail shown: %v", failedRows, bobRows)
	}
	if alerts != "1" {
		t.Errorf("alert count in the header %q, want 1 (the Undeliverable notice)", alerts)
	}
	screenshot(t, ctx, "queue-failed.png")

	// A new alert mail raises the count in the header without a reload
	// (the event stream; this view has nothing waiting, so no refresh).
	e.alert(alice, queue.SubjectUserLimit)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("alert-count").textContent === "2"`)); err != nil {
		t.Fatalf("the alert count did not follow a new alert: %v (browser said: %q)", err, problems())
	}
	// The keyboard reaches the page: the first Tab lands on the skip link.
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.className`)); err != nil || focused != "skip" {
		t.Errorf("the first Tab focuses %q (%v), want the skip link", focused, err)
	}

	// The relay holds the message, so the page shows it in the outbox
	// first and must update itself when it goes out.
	relay.Hold()
	err = chromedp.Do(ctx,
		chromedp.Click(row+` input[name="id"]`),
		chromedp.Click(`#resend`),
		chromedp.WaitVisible(`p.notice`),
		chromedp.WaitVisible(row+`[data-status="outbox"]`),
	)
	if err != nil {
		t.Fatalf("tag and resend: %v (browser said: %q)", err, problems())
	}
	screenshot(t, ctx, "queue-outbox.png")
	relay.Release()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(row+`[data-status="sent"]`)); err != nil {
		t.Fatalf("watching it become Sent: %v (browser said: %q)", err, problems())
	}
	screenshot(t, ctx, "queue-sent.png")
	var got []string
	for _, m := range relay.Accepted() {
		got = append(got, strings.Join(m.To, ","))
	}
	if len(got) != 1 || got[0] != "x@remote.test" {
		t.Errorf("the relay accepted %v, want the one resent message", got)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.url+"/alerts"), chromedp.WaitVisible(`#alerts`)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "alerts.png")
	// The alert leads to the entry it is about.
	if err := chromedp.Do(ctx, chromedp.Click(`#alerts li.alert-undeliverable a`), chromedp.WaitVisible(`#one-message`), chromedp.WaitVisible(row)); err != nil {
		t.Fatalf("following the alert: %v", err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#queue tbody tr[data-id]').length`))
	if err != nil || shown != 1 {
		t.Errorf("the alert's link shows %d entries (%v), want its one", shown, err)
	}

	// On a phone screen the page fits its width; the table scrolls inside.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(e.url+"/queue"), chromedp.WaitVisible(row)); err != nil {
		t.Fatal(err)
	}
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if !fits {
		t.Errorf("on a 390 px wide screen the page is wider than the screen")
	}
	screenshot(t, ctx, "queue-phone.png")

	// Choose the Body column (kept on the server) and read an entry's body
	// in place.
	err = chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Click(`details.columns summary`),
		chromedp.Click(`#columns-form input[value="body"]`),
		chromedp.Click(`#columns-form button`),
		chromedp.WaitVisible(`th.col-body`),
		chromedp.Click(row+` a.show-body`),
		chromedp.WaitVisible(`tr.body-row pre`),
	)
	if err != nil {
		t.Fatalf("the body on demand: %v (browser said: %q)", err, problems())
	}
	body, err := chromedp.Run(ctx, chromedp.Text(`tr.body-row pre`))
	if err != nil || !strings.Contains(body, "Hello Quarterly report") {
		t.Errorf("the body shown in place is %q (%v)", body, err)
	}
	screenshot(t, ctx, "queue-body.png")

	// Sign out through the button; the admin sees everyone's mail and the
	// system notifications, and filters by source.
	err = chromedp.Do(ctx,
		chromedp.Click(`header form button`),
		chromedp.WaitVisible(`#login-form`),
		chromedp.SendKeys(`#address`, admin),
		chromedp.SendKeys(`#password`, pass),
		chromedp.Submit(`#login-form`),
		chromedp.WaitVisible(`header.top`), // only a signed-in page has it
		chromedp.Navigate(e.url+"/queue"),
		chromedp.WaitVisible(`#filter-source`),
	)
	if err != nil {
		t.Fatalf("sign out, sign in as admin: %v (browser said: %q)", err, problems())
	}
	everyone, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.body.innerText.includes("bob's private mail") && document.body.innerText.includes("system notice")`))
	if err != nil || !everyone {
		t.Errorf("the admin's queue page lacks bob's mail or the system notice (%v)", err)
	}
	screenshot(t, ctx, "queue-admin.png")
	if p := problems(); len(p) > 0 {
		t.Errorf("the browser reported problems: %q", p)
	}
}
