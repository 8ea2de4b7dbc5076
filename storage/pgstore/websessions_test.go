package pgstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
)

// A web session survives a restart of the node, is ended by signing out,
// by a password change and by the user's deletion, is not found once
// expired, and only its token's hash is stored.
func TestWebSessions(t *testing.T) {
	b := postgresBackend()
	dsn := pgtest.New(t)
	s := b.Open(t, dsn)
	ctx := context.Background()
	if err := s.CreateUser(ctx, "alice@example.com", "secret", true); err != nil {
		t.Fatal(err)
	}
	token, ws, err := s.CreateWebSession(ctx, "Alice@Example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Address != "alice@example.com" || !ws.Admin || ws.CSRFToken == "" || ws.CSRFToken == token || len(token) < 40 {
		t.Fatalf("session %+v token %q: want the lower-cased address, admin, a CSRF token and a long token", ws, token)
	}
	s.Close()
	s = b.Open(t, dsn)
	got, err := s.WebSession(ctx, token)
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if got.Address != ws.Address || got.CSRFToken != ws.CSRFToken || !got.Expires.Equal(ws.Expires) || !got.Created.Equal(ws.Created) {
		t.Fatalf("got %+v, want %+v", got, ws)
	}
	if err := s.DeleteWebSession(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebSession(ctx, token); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after sign-out: %v, want ErrNotFound", err)
	}

	token, _, err = s.CreateWebSession(ctx, "alice@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "alice@example.com", "another secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebSession(ctx, token); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after a password change: %v, want ErrNotFound", err)
	}

	expired, _, err := s.CreateWebSession(ctx, "alice@example.com", -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebSession(ctx, expired); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("an expired session: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", string(make([]byte, 200)), "not a token"} {
		if _, err := s.WebSession(ctx, bad); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("token %q: %v, want ErrNotFound", bad, err)
		}
	}

	live, _, err := s.CreateWebSession(ctx, "alice@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := storage.WebPrefs{QueueColumns: []string{"size", "error"}, QueueColumnsSet: true, MailPane: "right"}
	if err := s.SetWebPrefs(ctx, "Alice@example.com", p); err != nil {
		t.Fatal(err)
	}
	if got, err := s.WebPrefs(ctx, "alice@example.com"); err != nil || !slices.Equal(got.QueueColumns, p.QueueColumns) || got.MailPane != "right" || !got.QueueColumnsSet {
		t.Fatalf("web prefs %+v, %v; want %+v", got, err, p)
	}
	if err := s.SetWebPrefs(ctx, "nobody@example.com", p); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("prefs of an unknown user: %v, want ErrNotFound", err)
	}
	if _, _, err := s.CreateWebSession(ctx, "nobody@example.com", time.Hour); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("session of an unknown user: %v, want ErrNotFound", err)
	}
	if err := s.DeleteUser(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebSession(ctx, live); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after the user's deletion: %v, want ErrNotFound", err)
	}
}
