package web

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/internal/testcert"
	"github.com/pochta/pochta/storage"
)

func TestSignInSetsAStrictCookieAndRedirects(t *testing.T) {
	e := newEnv(t, nil)
	c := e.anonymous()
	resp := c.form("/login", url.Values{"address": {"Alice@Example.com"}, "password": {pass}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/mail" {
		t.Fatalf("sign in: %s to %q, want 303 to /mail", resp.Status, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "pochta_session" {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("session cookie %+v: want pochta_session, HttpOnly, Secure, SameSite=Strict", cookie)
	}
	var s sessionJSON
	c.getJSON("/api/v1/session", &s)
	if s.Address != alice || s.Admin || len(s.CSRFToken) < 32 || s.PollInterval != 300 {
		t.Fatalf("session %+v", s)
	}
	for next, want := range map[string]string{
		"/queue?status=failed": "/queue?status=failed",
		"//evil.example/":      "/mail",
		"https://evil.example": "/mail",
		"/\\evil.example":      "/mail",
	} {
		resp := e.anonymous().form("/login", url.Values{"address": {alice}, "password": {pass}, "next": {next}})
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("next=%q: redirected to %q, want %q", next, got, want)
		}
	}
	// A wrong password answers the form again, with no cookie.
	resp = e.anonymous().form("/login", url.Values{"address": {alice}, "password": {"wrong"}})
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, `id="login-form"`) || !strings.Contains(body, "Wrong address or password") {
		t.Fatalf("wrong password: %s, cookies %v", resp.Status, resp.Cookies())
	}
	// Pages send the anonymous to the form and back.
	resp = e.anonymous().get("/queue?status=failed")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fqueue%3Fstatus%3Dfailed" {
		t.Fatalf("anonymous /queue: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	// The bare address opens the Mail page, as signing in does.
	resp = e.signIn(alice).get("/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/mail" {
		t.Fatalf("signed-in /: %s to %q, want the Mail page", resp.Status, resp.Header.Get("Location"))
	}
}

func TestWrongPasswordsAreThrottledThenRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Logins = abuse.NewLogins(abuse.LoginOptions{FailuresPerAddress: 3, BlockTime: time.Minute, BaseDelay: 30 * time.Millisecond, MaxDelay: 30 * time.Millisecond})
	})
	c := e.anonymous()
	var slowest time.Duration
	for i := range 3 {
		start := time.Now()
		resp := c.form("/login", url.Values{"address": {alice}, "password": {fmt.Sprint("guess", i)}})
		slowest = max(slowest, time.Since(start))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %s, want 401", i, resp.Status)
		}
	}
	if slowest < 30*time.Millisecond {
		t.Errorf("the third failure was answered in %v: not slowed", slowest)
	}
	// Blocked now: even the right password is refused before it is checked.
	resp := c.form("/login", url.Values{"address": {alice}, "password": {pass}})
	if body := readBody(t, resp); resp.StatusCode != http.StatusTooManyRequests || len(resp.Cookies()) != 0 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many failed sign-ins") {
		t.Fatalf("right password from a blocked address: %s, want 429 with Retry-After and no cookie", resp.Status)
	}
}

func TestForgedExpiredAndEndedSessionsAreRefused(t *testing.T) {
	e := newEnv(t, nil)
	forged := e.anonymous()
	u, _ := url.Parse(e.url)
	forged.http.Jar.SetCookies(u, []*http.Cookie{{Name: "pochta_session", Value: "forged-token-forged-token-forged-token-xx"}})
	if resp := forged.get("/api/v1/session"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged cookie: %s, want 401", resp.Status)
	}

	short := newEnv(t, func(o *Options) { o.SessionTTL = time.Second })
	c := short.signIn(alice)
	deadline := time.Now().Add(5 * time.Second)
	for c.get("/api/v1/session").StatusCode != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("a session past its lifetime is still accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}

	c = e.signIn(alice)
	if err := e.store.SetPassword(context.Background(), alice, "another one"); err != nil {
		t.Fatal(err)
	}
	if resp := c.get("/api/v1/session"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after user passwd: %s, want 401", resp.Status)
	}
	c = e.signIn(bob)
	if resp := c.form("/logout", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %s", resp.Status)
	}
	if resp := c.get("/api/v1/session"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after sign-out: %s, want 401", resp.Status)
	}
}

func TestMalformedOrOversizedJSONGets400WithAReason(t *testing.T) {
	e := newEnv(t, nil)
	c := e.signIn(alice)
	huge := `{"ids":[` + strings.Repeat("1,", 40000) + `1]}`
	for name, body := range map[string]string{
		"truncated":     `{"ids":[1`,
		"not an object": `[1,2]`,
		"wrong type":    `{"ids":"1"}`,
		"unknown field": `{"ids":[1],"all":true}`,
		"empty list":    `{"ids":[]}`,
		"two objects":   `{"ids":[1]}{"ids":[2]}`,
		"nothing":       ``,
		"oversized":     huge,
	} {
		for _, path := range []string{"/api/v1/queue/resend", "/api/v1/queue/delete"} {
			resp := c.sendJSON("POST", path, body)
			got := readBody(t, resp)
			var j map[string]string
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(got), &j) != nil || j["error"] == "" {
				t.Errorf("%s to %s: %s %q, want 400 {\"error\": …}", name, path, resp.Status, got)
			}
		}
	}
	for _, body := range []string{`{"poll_interval": "5m"}`, `{"poll_interval": 1}`, `{}`} {
		if resp := c.sendJSON("PUT", "/api/v1/settings", body); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("settings %s: %s, want 400", body, resp.Status)
		}
	}
	for _, q := range []string{"status=lost", "limit=0", "after=x", "order=sideways"} {
		if resp := c.get("/api/v1/queue?" + q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %s, want 400", q, resp.Status)
		}
	}
	if resp := c.get("/api/v1/nothing"); resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(readBody(t, resp), `{"error":`) {
		t.Errorf("unknown endpoint: %s, want 404 with a JSON error", resp.Status)
	}
	// Resending what is still waiting is a conflict, named.
	id := e.queue(alice, "waiting", storage.QueueOutbox)
	resp := c.sendJSON("POST", "/api/v1/queue/resend", fmt.Sprintf(`{"ids":[%d]}`, id))
	if body := readBody(t, resp); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "only failed or sent") {
		t.Errorf("resending an outbox entry: %s %s, want 409", resp.Status, body)
	}
	if resp := c.sendJSON("POST", "/api/v1/queue/delete", `{"ids":[999999]}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleting an unknown entry: %s, want 404", resp.Status)
	}
}

// TestEveryPageEscapesValuesFromMail: subjects, relay replies and alert
// subjects are attacker-controlled.
func TestEveryPageEscapesValuesFromMail(t *testing.T) {
	e := newEnv(t, nil)
	const evil = `<script>alert(1)</script>`
	id := e.queue(alice, evil, storage.QueueOutbox)
	e.setStatus(id, storage.QueueFailed, `550 <img src=x onerror=alert(2)>`)
	e.alert(alice, "Undeliverable: "+evil)
	c := e.signIn(alice)
	if resp := c.form("/queue/columns", url.Values{"col": queueColumns}); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.Status)
	}
	pages := map[string]*http.Response{
		"queue":   c.get("/queue"),
		"entry":   c.get(fmt.Sprintf("/queue/%d", id)),
		"alerts":  c.get("/alerts"),
		"confirm": c.form("/queue/action", url.Values{"action": {"delete"}, "id": {fmt.Sprint(id)}}),
		"login":   e.anonymous().form("/login", url.Values{"address": {evil}, "password": {"x"}, "next": {`"><script>alert(3)</script>`}}),
	}
	for name, resp := range pages {
		body := readBody(t, resp)
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s page carries the markup unescaped", name)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(") {
			t.Errorf("%s page does not show the value (escaped)", name)
		}
	}
	// The entry still exists: the confirmation page asked, it did not act.
	if _, err := e.store.QueueEntry(t.Context(), id); err != nil {
		t.Fatalf("the unconfirmed delete deleted: %v", err)
	}
}

func TestQueueJSONIsTheCLIsAndListsAreNeverNull(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.signIn(bob).get("/api/v1/queue")
	if body := strings.TrimSpace(readBody(t, resp)); body != "[]" {
		t.Errorf("empty listing: %q, want []", body)
	}
	e.queue(alice, "fields", storage.QueueSent)
	var list []map[string]any
	e.signIn(alice).getJSON("/api/v1/queue", &list)
	if len(list) != 1 {
		t.Fatalf("%d entries", len(list))
	}
	for _, k := range []string{"id", "status", "source", "from", "to", "cc", "bcc", "subject", "mime_type", "date", "attempts", "sent", "sent_on", "error", "size"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("entry lacks %q (SPEC.md Queue)", k)
		}
	}
	if cc, ok := list[0]["cc"].([]any); !ok || len(cc) != 0 {
		t.Errorf("cc = %#v, want []", list[0]["cc"])
	}
	if list[0]["sent"] != true || list[0]["sent_on"] == nil {
		t.Errorf("sent entry: sent=%v sent_on=%v", list[0]["sent"], list[0]["sent_on"])
	}
}

func TestQueuePageFiltersKeepsColumnsAndPages(t *testing.T) {
	e := newEnv(t, nil)
	var ids []uint64
	for i := range 5 {
		st := storage.QueueSent
		if i%2 == 0 {
			st = storage.QueueFailed
		}
		ids = append(ids, e.queue(alice, fmt.Sprintf("message-%d", i), st))
	}
	c := e.signIn(alice)
	body := readBody(t, c.get("/queue"))
	for i := range 5 {
		if !strings.Contains(body, fmt.Sprintf("message-%d", i)) {
			t.Errorf("the unfiltered page misses message-%d", i)
		}
	}
	body = readBody(t, c.get("/queue?status=failed"))
	if strings.Contains(body, "message-1") || !strings.Contains(body, "message-4") {
		t.Errorf("the Failed filter shows sent mail or misses failed")
	}
	// Default columns, then the user's own choice, kept across sign-ins.
	if !strings.Contains(body, "Send Attempts") || strings.Contains(body, `class="col-mime_type"`) {
		t.Errorf("default columns wrong")
	}
	c.form("/queue/columns", url.Values{"col": {"mime_type", "cc"}, "back": {"status=failed"}})
	body = readBody(t, e.signIn(alice).get("/queue"))
	if !strings.Contains(body, `class="col-mime_type"`) || !strings.Contains(body, `class="col-cc"`) || strings.Contains(body, `class="col-attempts"`) {
		t.Errorf("the chosen columns are not the ones shown")
	}
	if strings.Contains(readBody(t, e.signIn(bob).get("/queue")), `class="col-mime_type"`) {
		t.Errorf("alice's column choice changed bob's page")
	}
	// Pages of two, newest first, by the store's cursor.
	body = readBody(t, c.get("/queue?limit=2"))
	if !strings.Contains(body, "message-4") || !strings.Contains(body, "message-3") || strings.Contains(body, "message-2") {
		t.Fatalf("first page of two is not the newest two")
	}
	next := fmt.Sprintf(`href="/queue?after=%d&amp;limit=2"`, ids[3])
	if !strings.Contains(body, next) {
		t.Fatalf("first page lacks the next-page link %s", next)
	}
	body = readBody(t, c.get(fmt.Sprintf("/queue?after=%d&limit=2", ids[3])))
	if !strings.Contains(body, "message-2") || !strings.Contains(body, "message-1") || strings.Contains(body, "message-3") {
		t.Fatalf("second page wrong")
	}
	// Resend through the page form: confirmation first, then the act, then
	// the listing without the type filter so the entries stay in view.
	resp := c.form("/queue/action", url.Values{"action": {"resend"}, "id": {fmt.Sprint(ids[0]), fmt.Sprint(ids[1])}, "back": {"status=failed"}, "confirm": {"yes"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/queue?resent=2" {
		t.Fatalf("resend: %s to %q", resp.Status, loc)
	}
	body = readBody(t, c.get("/queue?resent=2"))
	if !strings.Contains(body, "Entries put back into the outbox: 2") || !strings.Contains(body, `data-waiting="true"`) {
		t.Errorf("after resend the page does not say so or does not refresh itself")
	}
}

func TestAlertCentreShowsTheQueuesAlertMails(t *testing.T) {
	e := newEnv(t, nil)
	other := e.queue(alice, "another failure", storage.QueueFailed)
	id := e.queue(alice, "quarterly report", storage.QueueFailed)
	en, err := e.store.QueueEntry(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	e.alert(alice, "Undeliverable: quarterly report", "In-Reply-To: "+en.MessageID+"\r\n")
	e.alert(alice, "Daily e-mail limit reached")
	e.alert(admin, "Mail relay is down")
	// Not alerts: ordinary mail, and a look-alike not from the postmaster.
	raw := "From: mallory@example.net\r\nSubject: Undeliverable: click here\r\n\r\nx\r\n"
	if _, err := e.store.Append(t.Context(), alice, storage.Inbox, &storage.NewMessage{Raw: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
	c := e.signIn(alice)
	var list []alertJSON
	c.getJSON("/api/v1/alerts", &list)
	if len(list) != 2 || list[0].Kind != "user_limit" || list[1].Kind != "undeliverable" || !strings.HasPrefix(list[1].Link, "/queue?message_id=") || list[1].Seen {
		t.Fatalf("alice's alerts %+v", list)
	}
	// The alert's link shows the entry it is about, not every failure.
	body := readBody(t, c.get(list[1].Link))
	if !strings.Contains(body, fmt.Sprintf(`data-id="%d"`, id)) || strings.Contains(body, fmt.Sprintf(`data-id="%d"`, other)) || !strings.Contains(body, `id="one-message"`) {
		t.Errorf("the alert's link %s does not show just its entry", list[1].Link)
	}
	body = readBody(t, c.get("/queue"))
	if !strings.Contains(body, `id="alert-count" aria-label="2 unread">2<`) {
		t.Errorf("the header does not count 2 unread alerts")
	}
	if !strings.Contains(readBody(t, c.get("/alerts")), "You have undeliverable e-mail") {
		t.Errorf("the alert centre does not show the undeliverable alert")
	}
	c.form("/alerts/read", url.Values{})
	c.getJSON("/api/v1/alerts", &list)
	if len(list) != 2 || !list[0].Seen || !list[1].Seen {
		t.Errorf("after mark read: %+v", list)
	}
	var adm []alertJSON
	e.signIn(admin).getJSON("/api/v1/alerts", &adm)
	if len(adm) != 1 || adm[0].Kind != "relay_down" {
		t.Errorf("admin's alerts %+v", adm)
	}
}

func TestEventsStreamAnnouncesNewMailOfThatUserOnly(t *testing.T) {
	e := newEnv(t, nil)
	c := e.signIn(alice)
	req, _ := http.NewRequest("GET", e.url+"/api/v1/events", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, ":") {
		t.Fatalf("first line %q", line)
	}
	e.alert(bob, "Undeliverable: bob's")
	e.alert(alice, "Undeliverable: alice's")
	lines := make(chan string)
	go func() {
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- l
		}
	}()
	timeout := time.After(5 * time.Second)
	var got []string
	for len(got) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended")
			}
			if strings.HasPrefix(l, "event:") || strings.HasPrefix(l, "data:") {
				got = append(got, strings.TrimSpace(l))
			}
		case <-timeout:
			t.Fatalf("no mail event in 5s; got %q", got)
		}
	}
	if got[0] != "event: mail" || !strings.Contains(got[1], `"subject":"Undeliverable: alice's"`) || !strings.Contains(got[1], `"alert":true`) || !strings.Contains(got[1], `"mailbox":"INBOX"`) {
		t.Fatalf("event %q", got)
	}
}

func TestEventsStreamReportsNotDeliveredChanges(t *testing.T) {
	e := newEnv(t, nil)
	raw := []byte("From: alice@example.com\r\nTo: bob@example.com, admin@example.com\r\nSubject: minutes\r\nMessage-ID: <minutes@example.com>\r\n\r\nHi\r\n")
	res, err := e.store.Deliver(t.Context(), &storage.Delivery{
		Sender: alice, SentCopy: &storage.NewMessage{Raw: raw}, Recipients: []string{bob, admin}, Copy: &storage.NewMessage{Raw: raw},
		From: alice, Source: storage.SourceUser, MessageID: "<minutes@example.com>", Subject: "minutes",
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := e.signIn(alice).events()
	if _, err := e.store.StoreFlags(t.Context(), bob, res.Copies[bob].MailboxID, []imap.UID{res.Copies[bob].UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	name, data := nextEvent(t, lines)
	var ev sentEvent
	if err := json.Unmarshal([]byte(data), &ev); err != nil || name != "sent" {
		t.Fatalf("event %q %s (%v), want sent", name, data, err)
	}
	if ev.Mailbox != "Sent" || ev.UID != uint32(res.Sent.UID) || ev.Subject != "minutes" || len(ev.NotDelivered) != 1 || ev.NotDelivered[0] != admin {
		t.Fatalf("sent event %+v: want alice's Sent copy with admin not delivered", ev)
	}
}

func TestSecurityHeadersGzipAndHTTP2(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HSTS = true })
	c := e.signIn(alice)
	resp := c.get("/queue")
	if resp.ProtoMajor != 2 {
		t.Errorf("served over %s, want HTTP/2", resp.Proto)
	}
	h := resp.Header
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Strict-Transport-Security") == "" {
		t.Errorf("headers %v", h)
	}
	if body := readBody(t, resp); strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
		t.Errorf("the page has inline script")
	}
	if h := e.anonymous().get("/login").Header; newEnv(t, nil).anonymous().get("/login").Header.Get("Strict-Transport-Security") != "" || h.Get("Strict-Transport-Security") == "" {
		t.Errorf("HSTS must follow the option")
	}
	// gzip for clients that ask.
	tr := e.tr.Clone()
	tr.DisableCompression = true
	hc := &http.Client{Transport: tr}
	req, _ := http.NewRequest("GET", e.url+"/static/app.js", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	gz, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Body.Close()
	zr, err := gzip.NewReader(gz.Body)
	if gz.Header.Get("Content-Encoding") != "gzip" || err != nil {
		t.Fatalf("app.js: Content-Encoding %q, %v", gz.Header.Get("Content-Encoding"), err)
	}
	if js, _ := io.ReadAll(zr); !strings.Contains(string(js), "use strict") {
		t.Errorf("gzipped app.js does not decode to the script")
	}

	// Serve speaks HTTP/2 over TLS.
	serverTLS, clientTLS := testcert.New(t, "127.0.0.1")
	w, err := New(Options{Store: e.store, TLSConfig: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go w.Serve(l)
	defer w.Shutdown(context.Background())
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}
	r2, err := h2.Get("https://" + l.Addr().String() + "/login")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.ProtoMajor != 2 || r2.StatusCode != http.StatusOK {
		t.Errorf("Serve answered %s over %s, want 200 over HTTP/2", r2.Status, r2.Proto)
	}
	_ = tls.VersionTLS12
}

func TestRussianLabelsFollowAcceptLanguage(t *testing.T) {
	for key := range locales["en"] {
		if locales["ru"][key] == "" {
			t.Errorf("ru lacks %q", key)
		}
	}
	for key := range locales["ru"] {
		if locales["en"][key] == "" {
			t.Errorf("en lacks %q", key)
		}
	}
	// Every label a template names exists (a missing one renders empty).
	files, _ := templateFiles.ReadDir("templates")
	for _, f := range files {
		b, _ := templateFiles.ReadFile("templates/" + f.Name())
		for _, m := range regexp.MustCompile(`\.T\.([a-z_]+)`).FindAllStringSubmatch(string(b), -1) {
			if locales["en"][m[1]] == "" {
				t.Errorf("%s uses label %q that no locale has", f.Name(), m[1])
			}
		}
	}
	e := newEnv(t, nil)
	c := e.signIn(alice)
	for lang, want := range map[string]string{
		"ru-RU,ru;q=0.9,en;q=0.5": "Очередь писем",
		"en-GB,ru;q=0.3":          "E-mail Queue",
		"de":                      "E-mail Queue",
		"":                        "E-mail Queue",
	} {
		resp := c.get("/queue", "Accept-Language", lang)
		if body := readBody(t, resp); !strings.Contains(body, "<h1>"+want+"</h1>") {
			t.Errorf("Accept-Language %q: heading is not %q", lang, want)
		}
	}
}
