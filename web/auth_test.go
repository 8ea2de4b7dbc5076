package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/pochta/pochta/storage"
)

// actors of the authorisation table.
const (
	asOwner  = "owner (alice)"
	asOther  = "other user (bob)"
	asAdmin  = "admin"
	asAnon   = "anonymous"
	asNoCSRF = "owner without CSRF token"
)

var actors = []string{asOwner, asOther, asAdmin, asAnon, asNoCSRF}

func (e *testEnv) as(actor string) *client {
	switch actor {
	case asOwner:
		return e.signIn(alice)
	case asOther:
		return e.signIn(bob)
	case asAdmin:
		return e.signIn(admin)
	case asNoCSRF:
		c := e.signIn(alice)
		c.csrf = ""
		return c
	}
	return e.anonymous()
}

// TestEveryEndpointAnswersOnlyWhoMayAsk: each endpoint as the entry's owner,
// another user, an admin, nobody, and the owner without the CSRF token. A
// user never sees or acts on another's entry; nothing changes state without
// the token.
func TestEveryEndpointAnswersOnlyWhoMayAsk(t *testing.T) {
	e := newEnv(t, nil)
	type endpoint struct {
		name string
		call func(c *client, id uint64) *http.Response
		want map[string]int
		// changed reports whether the entry was acted on.
		changed func(id uint64) bool
	}
	get := func(path string) func(*client, uint64) *http.Response {
		return func(c *client, id uint64) *http.Response { return c.get(fmt.Sprintf(path, id)) }
	}
	resent := func(id uint64) bool {
		en, err := e.store.QueueEntry(t.Context(), id)
		return err == nil && en.Status == storage.QueueOutbox
	}
	deleted := func(id uint64) bool { _, err := e.store.QueueEntry(t.Context(), id); return err != nil }
	readOnly := map[string]int{asOwner: 200, asOther: 403, asAdmin: 200, asAnon: 401, asNoCSRF: 200}
	acting := map[string]int{asOwner: 200, asOther: 403, asAdmin: 200, asAnon: 401, asNoCSRF: 403}
	pageActing := map[string]int{asOwner: 303, asOther: 403, asAdmin: 303, asAnon: 401, asNoCSRF: 403}
	endpoints := []endpoint{
		{name: "GET /api/v1/queue/{id}", call: get("/api/v1/queue/%d"), want: readOnly},
		{name: "GET /queue/{id}", call: get("/queue/%d"), want: map[string]int{asOwner: 200, asOther: 403, asAdmin: 200, asAnon: 303, asNoCSRF: 200}},
		{name: "POST /api/v1/queue/resend", want: acting, changed: resent, call: func(c *client, id uint64) *http.Response {
			return c.sendJSON("POST", "/api/v1/queue/resend", fmt.Sprintf(`{"ids":[%d]}`, id))
		}},
		{name: "POST /api/v1/queue/delete", want: acting, changed: deleted, call: func(c *client, id uint64) *http.Response {
			return c.sendJSON("POST", "/api/v1/queue/delete", fmt.Sprintf(`{"ids":[%d]}`, id))
		}},
		{name: "POST /queue/action resend", want: pageActing, changed: resent, call: func(c *client, id uint64) *http.Response {
			return c.form("/queue/action", url.Values{"action": {"resend"}, "id": {fmt.Sprint(id)}, "confirm": {"yes"}})
		}},
		{name: "POST /queue/action delete", want: pageActing, changed: deleted, call: func(c *client, id uint64) *http.Response {
			return c.form("/queue/action", url.Values{"action": {"delete"}, "id": {fmt.Sprint(id)}, "confirm": {"yes"}})
		}},
		{name: "GET /api/v1/session", call: get("/api/v1/session?%d"), want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 401, asNoCSRF: 200}},
		{name: "PUT /api/v1/settings", call: func(c *client, _ uint64) *http.Response {
			return c.sendJSON("PUT", "/api/v1/settings", `{"poll_interval": 600}`)
		}, want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 401, asNoCSRF: 403}},
		{name: "GET /api/v1/alerts", call: get("/api/v1/alerts?%d"), want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 401, asNoCSRF: 200}},
		{name: "POST /queue/columns", call: func(c *client, _ uint64) *http.Response {
			return c.form("/queue/columns", url.Values{"col": {"cc"}})
		}, want: map[string]int{asOwner: 303, asOther: 303, asAdmin: 303, asAnon: 401, asNoCSRF: 403}},
		{name: "POST /alerts/read", call: func(c *client, _ uint64) *http.Response {
			return c.form("/alerts/read", url.Values{})
		}, want: map[string]int{asOwner: 303, asOther: 303, asAdmin: 303, asAnon: 401, asNoCSRF: 403}},
		{name: "GET /api/v1/queue", call: get("/api/v1/queue?after=%d"), want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 401, asNoCSRF: 200}},
		{name: "GET /queue", call: get("/queue?after=%d"), want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 303, asNoCSRF: 200}},
		{name: "GET /alerts", call: get("/alerts?%d"), want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 303, asNoCSRF: 200}},
		{name: "GET /mail", call: get("/mail?%d"), want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 303, asNoCSRF: 200}},
		{name: "GET /api/v1/events", call: func(c *client, _ uint64) *http.Response {
			// A stream: only its status matters here.
			ctx, cancel := context.WithCancel(t.Context())
			req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/api/v1/events", nil)
			resp, err := c.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			// The first line (the stream's opening comment, or the error).
			body, _ := bufio.NewReader(resp.Body).ReadString('\n')
			cancel()
			resp.Body.Close()
			resp.Body = io.NopCloser(strings.NewReader(string(body)))
			return resp
		}, want: map[string]int{asOwner: 200, asOther: 200, asAdmin: 200, asAnon: 401, asNoCSRF: 200}},
		{name: "POST /logout", call: func(c *client, _ uint64) *http.Response {
			return c.form("/logout", url.Values{})
		}, want: map[string]int{asOwner: 303, asOther: 303, asAdmin: 303, asAnon: 401, asNoCSRF: 403}},
	}
	for _, ep := range endpoints {
		for _, actor := range actors {
			t.Run(ep.name+" as "+actor, func(t *testing.T) {
				id := e.queue(alice, "alice's failed mail", storage.QueueFailed)
				c := e.as(actor)
				resp := ep.call(c, id)
				body := readBody(t, resp)
				if resp.StatusCode != ep.want[actor] {
					t.Fatalf("%s, want %d: %s", resp.Status, ep.want[actor], body)
				}
				isAPI := strings.Contains(ep.name, "/api/")
				if isAPI && resp.StatusCode >= 400 && !strings.HasPrefix(body, `{"error":`) {
					t.Errorf("rejected API request answered %q, want {\"error\": …}", body)
				}
				if ep.changed != nil {
					allowed := resp.StatusCode < 400
					if got := ep.changed(id); got != allowed {
						t.Errorf("entry acted on: %v, want %v", got, allowed)
					}
				}
			})
		}
	}
}

// TestUsersSeeTheirOwnEntriesAndAdminsEveryones: the listing (API and page)
// as each actor.
func TestUsersSeeTheirOwnEntriesAndAdminsEveryones(t *testing.T) {
	e := newEnv(t, nil)
	a1 := e.queue(alice, "alice one", storage.QueueFailed)
	b1 := e.queue(bob, "bob one", storage.QueueSent)
	a2 := e.queue(alice, "alice two", storage.QueueOutbox)
	sys := e.queue("", "system notice", storage.QueueOutbox)

	cases := []struct {
		actor, query string
		want         []uint64
	}{
		{asOwner, "", []uint64{a2, a1}},
		{asOwner, "status=failed", []uint64{a1}},
		{asOther, "", []uint64{b1}},
		{asOther, "status=failed", []uint64{}},
		{asAdmin, "", []uint64{sys, a2, b1, a1}},
		{asAdmin, "source=system", []uint64{sys}},
		{asAdmin, "source=user&status=outbox", []uint64{a2}},
		{asAdmin, "user=bob@example.com", []uint64{b1}},
		{asAdmin, "order=oldest&limit=2", []uint64{a1, b1}},
	}
	for _, c := range cases {
		got := e.as(c.actor).queueIDs(c.query)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s, ?%s: %v, want %v", c.actor, c.query, got, c.want)
		}
	}
	// The page shows the same.
	page := readBody(t, e.signIn(bob).get("/queue"))
	if !strings.Contains(page, "bob one") || strings.Contains(page, "alice one") || strings.Contains(page, "system notice") {
		t.Errorf("bob's queue page shows other people's mail or misses his own")
	}
	if strings.Contains(page, `id="queue-counts"`) {
		t.Errorf("bob sees the whole queue's counts")
	}
	page = readBody(t, e.signIn(admin).get("/queue"))
	if !strings.Contains(page, "Failed: 1</span> · <span>Outbox: 2</span> · <span>Held (daily limit): 0</span> · <span>Sent: 1") {
		t.Errorf("the admin's page lacks the queue counts")
	}
	page = readBody(t, e.signIn(admin).get("/queue?source=system"))
	if !strings.Contains(page, "system notice") || strings.Contains(page, "alice one") {
		t.Errorf("the admin's system-notification view is wrong")
	}
	// What a user may not ask for is refused, not silently widened.
	for _, q := range []string{"source=system", "user=bob@example.com"} {
		resp := e.signIn(alice).get("/api/v1/queue?" + q)
		if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"error"`) {
			t.Errorf("alice asking ?%s: %s %s, want 403 with an error", q, resp.Status, body)
		}
	}
	// A request naming an allowed and a forbidden entry changes nothing.
	resp := e.signIn(bob).sendJSON("POST", "/api/v1/queue/delete", fmt.Sprintf(`{"ids":[%d,%d]}`, b1, a1))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob deleting his and alice's entry: %s, want 403", resp.Status)
	}
	if _, err := e.store.QueueEntry(t.Context(), b1); err != nil {
		t.Errorf("bob's own entry was deleted by a refused request: %v", err)
	}
}
