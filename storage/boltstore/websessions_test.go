package boltstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

func TestWebSessionLivesUntilSignOutAndSurvivesARestart(t *testing.T) {
	s, path := openTestStore(t)
	mustCreateUser(t, s, "alice@example.com")
	ctx := context.Background()
	token, ws, err := s.CreateWebSession(ctx, "Alice@Example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Address != "alice@example.com" || ws.CSRFToken == "" || ws.CSRFToken == token || len(token) < 40 {
		t.Fatalf("session %+v token %q: want the lower-cased address, a CSRF token and a long token", ws, token)
	}
	s = reopen(t, s, path)
	got, err := s.WebSession(ctx, token)
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if got.Address != ws.Address || got.CSRFToken != ws.CSRFToken {
		t.Fatalf("got %+v, want %+v", got, ws)
	}
	if err := s.DeleteWebSession(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebSession(ctx, token); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after sign-out: %v, want ErrNotFound", err)
	}
}

func TestWebSessionTokenIsNotStoredInTheDatabase(t *testing.T) {
	s, path := openTestStore(t)
	mustCreateUser(t, s, "alice@example.com")
	token, _, err := s.CreateWebSession(context.Background(), "alice@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(token)) {
		t.Fatal("the session token is in the database file; only its hash may be")
	}
}

func TestWebSessionEndsWithPasswordChangeOrUserDeletion(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	alice, _, err := s.CreateWebSession(ctx, "alice@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := s.CreateWebSession(ctx, "bob@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "alice@example.com", "new secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebSession(ctx, alice); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after user passwd: %v, want ErrNotFound", err)
	}
	if _, err := s.WebSession(ctx, bob); err != nil {
		t.Fatalf("bob's session ended by alice's new password: %v", err)
	}
	if err := s.DeleteUser(ctx, "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	mustCreateUser(t, s, "bob@example.com") // same address, a new person
	if _, err := s.WebSession(ctx, bob); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after user del and add: %v, want ErrNotFound", err)
	}
}

func TestWebSessionRefusesExpiredAndForgedTokens(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	expired, _, err := s.CreateWebSession(ctx, "alice@example.com", -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	live, _, err := s.CreateWebSession(ctx, "alice@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"expired": expired, "forged": "A" + live[1:], "empty": "", "huge": string(bytes.Repeat([]byte("x"), 1<<16)),
	} {
		if _, err := s.WebSession(ctx, tok); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s token: %v, want ErrNotFound", name, err)
		}
	}
	if _, _, err := s.CreateWebSession(ctx, "nobody@example.com", time.Hour); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("session for an unknown user: %v, want ErrNotFound", err)
	}
	// The sweep at the next sign-in removed the expired one.
	n := 0
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWebSessions).ForEach(func(k, v []byte) error { n++; return nil })
	})
	if n != 1 {
		t.Errorf("%d sessions stored, want 1 (the expired one swept)", n)
	}
}

func TestWebPrefsAreKeptPerUserAndGoWithTheUser(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	want := storage.WebPrefs{QueueColumns: []string{"cc", "error"}, QueueColumnsSet: true}
	if err := s.SetWebPrefs(ctx, "alice@example.com", want); err != nil {
		t.Fatal(err)
	}
	got, err := s.WebPrefs(ctx, "alice@example.com")
	if err != nil || len(got.QueueColumns) != 2 || got.QueueColumns[1] != "error" || !got.QueueColumnsSet {
		t.Fatalf("alice's prefs %+v, %v; want %+v", got, err, want)
	}
	if got, _ := s.WebPrefs(ctx, "bob@example.com"); got.QueueColumnsSet {
		t.Fatalf("bob got alice's prefs: %+v", got)
	}
	if err := s.DeleteUser(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	mustCreateUser(t, s, "alice@example.com")
	if got, _ := s.WebPrefs(ctx, "alice@example.com"); got.QueueColumnsSet {
		t.Fatalf("a re-created user inherited prefs: %+v", got)
	}
}
