package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/pgtest"
)

// Behind a load balancer a browser's requests land on any node: a web
// session signed in on node A works on node B (sessions and their CSRF
// tokens are in the shared database), and signing out on B ends it on A.
func TestPostgresWebSessionWorksOnEveryNode(t *testing.T) {
	cfgs, dirs, webAddrs := postgresNodeConfigs(t, pgtest.New(t))
	for i, p := range cfgs {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("\n[web]\nlisten = \"" + webAddrs[i] + "\"\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	const alice, pw = "alice@example.test", "pw-alice-long"
	if code, _, stderr := pochta(t, pw+"\n", "user", "add", alice, "--password-stdin", "--config", cfgs[0]); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	for i := range cfgs {
		startDaemon(t, cfgs[i], dirs[i]+"/data")
	}
	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the nodes' self-signed certificate
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := func(i int) string { return "https://" + webAddrs[i] }
	req, err := http.NewRequest(http.MethodPost, base(0)+"/login", strings.NewReader(url.Values{"address": {alice}, "password": {pw}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base(0))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "pochta_session" {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == nil {
		t.Fatalf("sign-in on A: %s, cookie %v", resp.Status, cookie)
	}
	session := func(i int) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base(i)+"/api/v1/session", nil)
		req.AddCookie(cookie)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Address string `json:"address"`
			CSRF    string `json:"csrf_token"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		if body.Address != "" && body.Address != alice {
			t.Fatalf("node %d: session of %q", i, body.Address)
		}
		return resp.StatusCode, body.CSRF
	}
	codeA, csrfA := session(0)
	codeB, csrfB := session(1)
	if codeA != http.StatusOK || codeB != http.StatusOK || csrfA == "" || csrfA != csrfB {
		t.Fatalf("session on A %d (csrf %q), on B %d (csrf %q): want both 200 with one token", codeA, csrfA, codeB, csrfB)
	}
	req, _ = http.NewRequest(http.MethodPost, base(1)+"/logout", strings.NewReader(url.Values{"csrf": {csrfB}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base(1))
	req.AddCookie(cookie)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		t.Fatalf("sign-out on B: %s", resp.Status)
	}
	if code, _ := session(0); code != http.StatusUnauthorized {
		t.Fatalf("after signing out on B, the session on A answers %d, want 401", code)
	}
}
