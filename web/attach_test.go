package web

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pochta/pochta/smtpd"
	"github.com/pochta/pochta/storage"
)

// withLimits sends through a real smtpd.Server whose max_message_size is
// also the web interface's, as the daemon wires them.
func withLimits(t *testing.T, maxSize int64) func(*Options) {
	return func(o *Options) {
		srv, err := smtpd.New(smtpd.Options{Hostname: "mail.example.com", Domains: []string{"example.com"}, Store: o.Store,
			MaxMessageSize: maxSize, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		o.Submit, o.MaxMessageSize = srv.Submit, maxSize
	}
}

type upload struct {
	name, typ string
	data      []byte
}

// composeForm is a multipart/form-data compose request as the page sends it.
func composeForm(t testing.TB, fields map[string][]string, files ...upload) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, vs := range fields {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="attachment"; filename="%s"`, f.name))
		h.Set("Content-Type", f.typ)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

func (c *client) postForm(path string, fields map[string][]string, files ...upload) *http.Response {
	c.e.t.Helper()
	ct, body := composeForm(c.e.t, fields, files...)
	return c.do("POST", path, ct, bytes.NewReader(body), "X-CSRF-Token", c.csrf)
}

// openOnly opens the only message of a mailbox.
func openOnly(t *testing.T, c *client, mailbox string) messageBodyJSON {
	t.Helper()
	var list []messageJSON
	c.getJSON("/api/v1/messages?mailbox="+mailbox, &list)
	if len(list) != 1 {
		t.Fatalf("%s holds %d messages, want 1: %+v", mailbox, len(list), list)
	}
	var m messageBodyJSON
	c.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=%s", list[0].UID, mailbox), &m)
	return m
}

func download(t *testing.T, c *client, mailbox string, uid uint32, index int) []byte {
	t.Helper()
	resp := c.get(fmt.Sprintf("/api/v1/messages/%d/attachments/%d?mailbox=%s", uid, index, mailbox))
	if resp.StatusCode != 200 {
		t.Fatalf("download %d: %s", index, resp.Status)
	}
	return []byte(readBody(t, resp))
}

func TestSendWithAttachments(t *testing.T) {
	e := newEnv(t, withLimits(t, 1<<20))
	a := e.signIn(alice)
	binary := make([]byte, 3000)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	resp := a.postForm("/api/v1/send", map[string][]string{"to": {"bob@example.com"}, "subject": {"files"}, "text": {"see attached"}, "importance": {"normal"}, "draft_uid": {""}},
		upload{"отчёт 2026.pdf", "application/pdf", []byte("%PDF-1.4 fake")},
		upload{`..\..\evil/../passwd`, "text/html; charset=utf-8", []byte("<script>alert(1)</script>")},
		upload{"data.bin", "not a type", binary})
	if resp.StatusCode != 200 {
		t.Fatalf("send: %s %s", resp.Status, readBody(t, resp))
	}
	b := e.signIn(bob)
	m := openOnly(t, b, "INBOX")
	if m.Subject != "files" || !strings.Contains(m.Text, "see attached") {
		t.Fatalf("bob's message: %q %q", m.Subject, m.Text)
	}
	want := []attachmentJSON{
		{Index: 0, Name: "отчёт 2026.pdf", Type: "application/pdf", Size: 13},
		{Index: 1, Name: "passwd", Type: "text/html", Size: 25},
		{Index: 2, Name: "data.bin", Type: "application/octet-stream", Size: 3000},
	}
	if fmt.Sprint(m.Attachments) != fmt.Sprint(want) {
		t.Fatalf("attachments %+v, want %+v", m.Attachments, want)
	}
	if got := download(t, b, "INBOX", m.UID, 2); !bytes.Equal(got, binary) {
		t.Fatalf("data.bin came back as %d different bytes", len(got))
	}
	// The Sent copy has them too, and the message is multipart/mixed.
	sent := openOnly(t, a, "Sent")
	if len(sent.Attachments) != 3 {
		t.Fatalf("Sent copy: %+v", sent.Attachments)
	}
	mb, _ := e.store.Mailbox(t.Context(), bob, storage.Inbox)
	uids, _ := e.store.UIDs(t.Context(), bob, mb.ID)
	msgs, err := e.store.Messages(t.Context(), bob, mb.ID, uids, storage.LoadOptions{Body: true})
	if err != nil || len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), "Content-Type: multipart/mixed") {
		t.Fatalf("stored message is not multipart/mixed (%v)", err)
	}

	// JSON with base64 data does the same.
	body, _ := json.Marshal(map[string]any{"to": []string{admin}, "subject": "json", "text": "t",
		"attachments": []map[string]any{{"name": "a.txt", "type": "text/plain", "data": base64.StdEncoding.EncodeToString([]byte("hello file"))}}})
	if resp := a.sendJSON("POST", "/api/v1/send", string(body)); resp.StatusCode != 200 {
		t.Fatalf("JSON send: %s %s", resp.Status, readBody(t, resp))
	}
	c := e.signIn(admin)
	am := openOnly(t, c, "INBOX")
	if len(am.Attachments) != 1 || string(download(t, c, "INBOX", am.UID, 0)) != "hello file" {
		t.Fatalf("admin's attachment: %+v", am.Attachments)
	}
}

func TestDraftsKeepTheirAttachments(t *testing.T) {
	e := newEnv(t, withLimits(t, 1<<20))
	a := e.signIn(alice)
	var d struct{ UID uint32 }
	resp := a.postForm("/api/v1/drafts", map[string][]string{"to": {bob}, "subject": {"plan"}, "text": {"v1"}},
		upload{"plan.txt", "text/plain", []byte("the plan")}, upload{"old.txt", "text/plain", []byte("old")})
	decode(t, resp, &d)
	draft := openOnly(t, a, "Drafts")
	if len(draft.Attachments) != 2 || draft.Attachments[0].Name != "plan.txt" {
		t.Fatalf("the saved draft's attachments: %+v", draft.Attachments)
	}
	// Reopened, edited, one attachment removed and one added; saved again.
	resp = a.postForm("/api/v1/drafts", map[string][]string{"to": {bob}, "subject": {"plan"}, "text": {"v2"},
		"draft_uid": {fmt.Sprint(d.UID)}, "keep_attachments": {"0"}}, upload{"more.txt", "text/plain", []byte("more")})
	decode(t, resp, &d)
	draft = openOnly(t, a, "Drafts")
	if names := fmt.Sprint(draft.Attachments); !strings.Contains(names, "plan.txt") || !strings.Contains(names, "more.txt") || strings.Contains(names, "old.txt") || len(draft.Attachments) != 2 {
		t.Fatalf("the edited draft's attachments: %+v", draft.Attachments)
	}
	if !strings.Contains(draft.Text, "v2") {
		t.Fatalf("the edited draft's text: %q", draft.Text)
	}
	// Another user cannot take alice's draft's attachments by its UID.
	if resp := e.signIn(bob).sendJSON("POST", "/api/v1/send", fmt.Sprintf(`{"to":["bob@example.com"],"draft_uid":%d,"keep_attachments":[0]}`, d.UID)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bob keeping alice's attachments: %s", resp.Status)
	}
	// Sent with both kept: bob gets them, Drafts is empty.
	resp = a.sendJSON("POST", "/api/v1/send", fmt.Sprintf(`{"to":["bob@example.com"],"subject":"plan","text":"final","draft_uid":%d,"keep_attachments":[0,1]}`, d.UID))
	if resp.StatusCode != 200 {
		t.Fatalf("send the draft: %s %s", resp.Status, readBody(t, resp))
	}
	b := e.signIn(bob)
	m := openOnly(t, b, "INBOX")
	if len(m.Attachments) != 2 || string(download(t, b, "INBOX", m.UID, 0)) != "the plan" || string(download(t, b, "INBOX", m.UID, 1)) != "more" {
		t.Fatalf("bob's copy of the draft: %+v", m.Attachments)
	}
	var drafts []messageJSON
	a.getJSON("/api/v1/messages?mailbox=Drafts", &drafts)
	if len(drafts) != 0 {
		t.Fatalf("the sent draft stays: %+v", drafts)
	}
	if resp := a.sendJSON("POST", "/api/v1/send", `{"to":["bob@example.com"],"keep_attachments":[0]}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("keep_attachments without draft_uid: %s", resp.Status)
	}
}

// countingReader yields n bytes of filler and counts what was read.
type countingReader struct {
	n, read atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	left := r.n.Load() - r.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	for i := range p {
		p[i] = 'x'
	}
	r.read.Add(int64(len(p)))
	return len(p), nil
}

func TestAttachmentsOverTheSizeLimitAreRefusedWhileRead(t *testing.T) {
	const limit = 64 << 10
	e := newEnv(t, withLimits(t, limit))
	a := e.signIn(alice)
	sentence := fmt.Sprintf("Message exceeds the maximum size of %d bytes; nothing was stored", limit)
	checkRefusal := func(what string, resp *http.Response, status int) {
		t.Helper()
		var r struct {
			Error    string `json:"error"`
			SMTPCode int    `json:"smtp_code"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		if resp.StatusCode != status || r.Error != sentence || r.SMTPCode != 552 {
			t.Errorf("%s: %s %+v, want %d with SMTP's 552 sentence %q", what, resp.Status, r, status, sentence)
		}
	}
	for _, path := range []string{"/api/v1/send", "/api/v1/drafts"} {
		// Files over the limit: refused while read.
		checkRefusal(path+" with a 100 KiB file", a.postForm(path, map[string][]string{"to": {bob}}, upload{"big.bin", "application/octet-stream", make([]byte, 100<<10)}), http.StatusRequestEntityTooLarge)
		// 50 KiB of file is 68 KiB in base64: SMTP submission's own limit.
		want := http.StatusUnprocessableEntity
		if path == "/api/v1/drafts" {
			want = http.StatusRequestEntityTooLarge
		}
		checkRefusal(path+" with a 50 KiB file", a.postForm(path, map[string][]string{"to": {bob}}, upload{"mid.bin", "application/octet-stream", make([]byte, 50<<10)}), want)
	}

	// A body announced as 1 GiB is refused before it is read.
	huge := &countingReader{}
	huge.n.Store(1 << 30)
	req, _ := http.NewRequest("POST", e.url+"/api/v1/send", huge)
	req.ContentLength = 1 << 30
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	req.Header.Set("X-CSRF-Token", a.csrf)
	resp, err := a.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal("1 GiB announced", resp, http.StatusRequestEntityTooLarge)
	resp.Body.Close()
	if n := huge.read.Load(); n > 16<<20 {
		t.Errorf("the client sent %d bytes of a body refused by its announced size", n)
	}

	// A streamed body with no length: refused once the file passes the
	// limit, not after the whole of it.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		mw.WriteField("to", bob)
		w, _ := mw.CreateFormFile("attachment", "stream.bin")
		chunk := make([]byte, 32<<10)
		for i := 0; i < 1<<15; i++ { // 1 GiB at most
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		mw.Close()
		pw.Close()
	}()
	var sent atomic.Int64
	body := io.TeeReader(pr, writerFunc(func(p []byte) (int, error) { sent.Add(int64(len(p))); return len(p), nil }))
	req, _ = http.NewRequest("POST", e.url+"/api/v1/send", body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-CSRF-Token", a.csrf)
	start := time.Now()
	resp, err = a.http.Do(req)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal("a streamed 1 GiB file", resp, http.StatusRequestEntityTooLarge)
	resp.Body.Close()
	if n := sent.Load(); n > 16<<20 {
		t.Errorf("the server read %d bytes of a refused upload (%v)", n, time.Since(start))
	}
	for _, box := range []string{storage.Sent, storage.Drafts} {
		if st, _ := e.store.MailboxStatus(t.Context(), alice, box); st.Messages != 0 {
			t.Errorf("alice's %s holds %d messages after the refusals", box, st.Messages)
		}
	}
	if st, _ := e.store.MailboxStatus(t.Context(), bob, storage.Inbox); st.Messages != 0 {
		t.Errorf("bob received %d messages from refused sends", st.Messages)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestAttachmentBadInput(t *testing.T) {
	e := newEnv(t, withLimits(t, 4<<20))
	a := e.signIn(alice)
	// A received message with 1,000 attachments lists them all, and the
	// last one downloads.
	uid := e.appendRaw(alice, storage.Inbox, manyAttachments(1000))
	var m messageBodyJSON
	a.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX", uid), &m)
	if len(m.Attachments) != 1000 || string(download(t, a, "INBOX", uid, 999)) != "x" {
		t.Fatalf("1,000 attachments: %d listed", len(m.Attachments))
	}
	// Sending 1,001 is refused with the reason; 1,000 go.
	files := make([]upload, 1001)
	for i := range files {
		files[i] = upload{fmt.Sprintf("f%d.txt", i), "text/plain", []byte("f")}
	}
	resp := a.postForm("/api/v1/send", map[string][]string{"to": {bob}}, files...)
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "1000 attachments") {
		t.Fatalf("1,001 attachments: %s %s", resp.Status, body)
	}
	if resp := a.postForm("/api/v1/send", map[string][]string{"to": {bob}, "subject": {"thousand"}}, files[:1000]...); resp.StatusCode != 200 {
		t.Fatalf("1,000 attachments: %s %s", resp.Status, readBody(t, resp))
	}
	b := e.signIn(bob)
	if got := openOnly(t, b, "INBOX"); len(got.Attachments) != 1000 {
		t.Fatalf("bob got %d of 1,000 attachments", len(got.Attachments))
	}
	// A 10,000-byte file name with control characters and a path becomes
	// its last element, clean and at most 255 bytes; an unknown field is
	// refused, not ignored.
	long := "dir/" + strings.Repeat("ж", 5000) + ".txt"
	resp = a.postForm("/api/v1/drafts", map[string][]string{"to": {bob}}, upload{long + "\x01", "text/plain", []byte("x")})
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || len(body) > 400 {
		t.Fatalf("a control character in a form header: %s %d bytes, want 400 with a short reason", resp.Status, len(body))
	}
	body, _ := json.Marshal(map[string]any{"to": []string{bob}, "attachments": []map[string]any{{"name": strings.Replace(long, "жж", "ж\x01\x7fж", 1), "type": "text/plain", "data": []byte("x")}}})
	if resp := a.sendJSON("POST", "/api/v1/drafts", string(body)); resp.StatusCode != 200 {
		t.Fatalf("long name: %s %s", resp.Status, readBody(t, resp))
	}
	d := openOnly(t, a, "Drafts")
	if n := d.Attachments[0].Name; len(n) > 255 || strings.ContainsAny(n, "/\x01\x7f") || !strings.HasPrefix(n, "жж") || !strings.HasSuffix(n, ".txt") {
		t.Fatalf("the long name became %q (%d bytes)", n, len(n))
	}
	if resp := a.postForm("/api/v1/send", map[string][]string{"to": {bob}, "priority": {"1"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("an unknown form field: %s", resp.Status)
	}
}
