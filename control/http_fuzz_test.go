package control

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/storage/boltstore"
)

// fuzzRoutes are the control API's requests that carry client input: the
// JSON bodies of POST, PUT and PATCH, and the path and query values of the
// others. %s is the path-escaped fuzzed address or ID.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPost, "/v1/users"},
	{http.MethodPut, "/v1/users/%s/password"},
	{http.MethodPatch, "/v1/users/%s/settings"},
	{http.MethodGet, "/v1/users/%s/settings"},
	{http.MethodDelete, "/v1/users/%s"},
	{http.MethodGet, "/v1/users/%s/sent"},
	{http.MethodPost, "/v1/queue/%s/resend"},
	{http.MethodGet, "/v1/queue/%s"},
	{http.MethodDelete, "/v1/queue/%s"},
	{http.MethodGet, "/v1/queue?status=%s&source=%s&user=%s"},
}

// FuzzControlRequest sends the control API's handler arbitrary request
// bodies and path values, against a Local over a real store: whatever the
// input, no panic, never a 5xx (bad input is the client's error, not the
// server's), and every answer is JSON, with an "error" text when it is not
// a success.
func FuzzControlRequest(f *testing.F) {
	store, err := boltstore.Open(filepath.Join(f.TempDir(), "pochta.db"), boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if err := store.CreateUser(ctx, "alice@example.test", "a-password", false); err != nil {
		f.Fatal(err)
	}
	local := &Local{Store: store, Version: "fuzz", PollInterval: 5 * time.Minute, Domains: []string{"example.test"}}
	h := Handler(local, nil)
	mux, ok := h.(*http.ServeMux)
	if !ok {
		f.Fatalf("Handler returns a %T; the fuzz test asks a *http.ServeMux which routes match", h)
	}

	f.Add(uint8(0), "", []byte(`{"address":"new@example.test","password":"pw","admin":true}`))
	f.Add(uint8(0), "", []byte(`{"address":"x@other.test","password":""}`))
	f.Add(uint8(0), "", []byte(`{"address":"a b@example.test","password":"`+strings.Repeat("p", 100)+`"}`))
	f.Add(uint8(0), "", []byte(`{"address":1}`))
	f.Add(uint8(0), "", []byte(`{"unknown":true}`))
	f.Add(uint8(1), "alice@example.test", []byte(`{"password":"new-password"}`))
	f.Add(uint8(1), "nobody@example.test", []byte(`{"password":null}`))
	f.Add(uint8(2), "alice@example.test", []byte(`{"poll_interval":60000000000}`))
	f.Add(uint8(2), "alice@example.test", []byte(`{"poll_interval":-1}`))
	f.Add(uint8(2), "alice@example.test", []byte(`{"poll_interval":1e300}`))
	f.Add(uint8(2), "alice@example.test", []byte(`{"poll_interval":"5m"}`))
	f.Add(uint8(3), "ALICE@EXAMPLE.TEST", []byte(nil))
	f.Add(uint8(4), "../alice@example.test", []byte(nil))
	f.Add(uint8(5), "alice@example.test", []byte(nil))
	f.Add(uint8(6), "18446744073709551616", []byte(nil))
	f.Add(uint8(7), "0", []byte(nil))
	f.Add(uint8(8), "-1", []byte(nil))
	f.Add(uint8(9), "bogus", []byte(nil))
	f.Add(uint8(1), "alice@example.test", []byte("{\"password\":\"\xff\xfe\"}"))
	f.Add(uint8(0), "", []byte(`[`+strings.Repeat(`[`, 10000)))
	f.Fuzz(func(t *testing.T, route uint8, value string, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		esc := url.PathEscape(value)
		if strings.Contains(r.path, "?") {
			esc = url.QueryEscape(value)
		}
		path := strings.ReplaceAll(r.path, "%s", esc)
		req := httptest.NewRequest(r.method, "http://pochta"+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		res := rec.Result()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s with body %q: status %d: %s", r.method, path, body, res.StatusCode, rec.Body)
		}
		// A path that matches no route (an empty, "." or ".." segment, a
		// lone escaped "/") is answered by the ServeMux itself, in text:
		// 404, 405, or a redirect to the cleaned path. The Client turns any
		// non-JSON answer into "daemon answered <status>", so only the
		// API's own answers are held to JSON here.
		if _, pattern := mux.Handler(req); pattern == "" || res.StatusCode/100 == 3 {
			return
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q, want application/json (status %d)", r.method, path, ct, res.StatusCode)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: answer is not JSON: %q", r.method, path, rec.Body)
		}
		if res.StatusCode != http.StatusOK {
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: status %d without an error text: %q", r.method, path, res.StatusCode, rec.Body)
			}
		}
	})
}
