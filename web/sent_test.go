package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pochta/pochta/storage"
)

// countingStore counts the calls that read every tracking record a user
// has.
type countingStore struct {
	storage.Store
	fullReads atomic.Int64
}

func (c *countingStore) SentStatus(ctx context.Context, user string) ([]storage.SentMessage, error) {
	c.fullReads.Add(1)
	return c.Store.SentStatus(ctx, user)
}

func TestSentListReadsOnlyThePagesTrackingRecords(t *testing.T) {
	var cs *countingStore
	e := newEnv(t, func(o *Options) {
		cs = &countingStore{Store: o.Store}
		o.Store = cs
	})
	// 60 sent messages (two pages of 50), every other one read by bob, and
	// one copy a client APPENDed to Sent itself (no record).
	for i := 1; i <= 60; i++ {
		e.deliverLocal(alice, fmt.Sprintf("s%d", i), bob)
	}
	e.appendRaw(alice, storage.Sent, "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: appended\r\n\r\nx\r\n")
	b := e.signIn(bob)
	var inbox []messageJSON
	b.getJSON("/api/v1/messages?mailbox=INBOX&limit=100", &inbox)
	read := map[string]bool{}
	for _, m := range inbox {
		var n int
		fmt.Sscanf(m.Subject, "s%d", &n)
		if n%2 == 0 {
			b.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=INBOX", m.UID), new(messageBodyJSON))
			read[m.Subject] = true
		}
	}

	a := e.signIn(alice)
	before := cs.fullReads.Load()
	seen, firstUID := 0, uint32(0)
	path := "/api/v1/messages?mailbox=Sent"
	for path != "" {
		resp := a.get(path)
		var page []messageJSON
		decode(t, resp, &page)
		for _, m := range page {
			seen++
			if firstUID == 0 {
				firstUID = m.UID
			}
			if m.NotDelivered == nil {
				t.Fatalf("%q: no not_delivered in Sent", m.Subject)
			}
			want := bob
			if read[m.Subject] || m.Subject == "appended" {
				want = ""
			}
			if got := strings.Join(*m.NotDelivered, ","); got != want {
				t.Errorf("%q: not_delivered %q, want %q", m.Subject, got, want)
			}
		}
		path = ""
		if next := resp.Header.Get("X-Next-Before"); next != "" {
			path = "/api/v1/messages?mailbox=Sent&before=" + next
		}
	}
	if seen != 61 {
		t.Fatalf("listed %d Sent messages, want 61", seen)
	}
	// Opening one reads its own record too.
	var one messageBodyJSON
	a.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=Sent", firstUID), &one)
	if n := cs.fullReads.Load() - before; n != 0 {
		t.Fatalf("listing and opening Sent read all tracking records %d times, want 0 (one page's records only)", n)
	}
}

func TestFailedRecipientLinksToItsQueueEntry(t *testing.T) {
	e := newEnv(t, nil)
	id := e.queue(alice, "bounced", storage.QueueOutbox)
	a := e.signIn(alice)
	var sent []messageJSON
	a.getJSON("/api/v1/messages?mailbox=Sent", &sent)
	if len(sent) != 1 || sent[0].QueueLink != "" || sent[0].Failed == nil || len(*sent[0].Failed) != 0 {
		t.Fatalf("a queued message: %+v, want no failed recipients and no queue link", sent)
	}
	e.setStatus(id, storage.QueueFailed, "550 no such user")
	a.getJSON("/api/v1/messages?mailbox=Sent", &sent)
	if len(sent) != 1 || sent[0].Failed == nil || strings.Join(*sent[0].Failed, ",") != "x@remote.test" {
		t.Fatalf("after the queue gave up: %+v, want x@remote.test failed", sent)
	}
	var one messageBodyJSON
	a.getJSON(fmt.Sprintf("/api/v1/messages/%d?mailbox=Sent", sent[0].UID), &one)
	if one.QueueLink != sent[0].QueueLink || one.QueueLink == "" {
		t.Fatalf("the reading pane's link %q, the list's %q", one.QueueLink, sent[0].QueueLink)
	}
	// The link is the queue page showing that entry, and only it.
	u, err := url.Parse(sent[0].QueueLink)
	if err != nil || u.Path != "/queue" || u.Query().Get("status") != storage.QueueFailed {
		t.Fatalf("queue link %q", sent[0].QueueLink)
	}
	other := e.queue(alice, "another failure", storage.QueueFailed)
	page := readBody(t, a.get(sent[0].QueueLink))
	if !strings.Contains(page, fmt.Sprintf(`data-id="%d"`, id)) || !strings.Contains(page, "bounced") {
		t.Fatalf("the linked queue page does not show entry %d", id)
	}
	if strings.Contains(page, fmt.Sprintf(`data-id="%d"`, other)) || strings.Contains(page, "another failure") {
		t.Fatalf("the linked queue page shows another entry (%d) too", other)
	}
	// Bob following alice's link sees none of her entries.
	if page := readBody(t, e.signIn(bob).get(sent[0].QueueLink)); strings.Contains(page, "bounced") {
		t.Fatal("bob sees alice's entry through her link")
	}
}

func decode(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
