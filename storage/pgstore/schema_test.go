package pgstore

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/pgtest"
)

// No migration drops, truncates or retypes anything: upgrading never
// destroys data.
func TestMigrationsOnlyAdd(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	destructive := regexp.MustCompile(`(?i)\b(DROP\s+(TABLE|COLUMN|INDEX|SCHEMA|TRIGGER|FUNCTION)|TRUNCATE|ALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE|RENAME)\b`)
	for _, m := range ms {
		if loc := destructive.FindStringIndex(m.sql); loc != nil {
			t.Errorf("%s: destructive statement %q", m.name, m.sql[loc[0]:loc[1]])
		}
	}
}

// A body shared by copies is stored once: its reference count follows the
// copies (messages and queue entries alike), and the last copy to go takes
// the body with it, including when a whole user is deleted.
func TestSharedBodyRefcount(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	p := pool(t, dsn)
	mbox, body := setupMailbox(t, p)
	refs := func() int64 {
		t.Helper()
		var n int64 = -1
		if err := p.QueryRow(ctx, "SELECT coalesce((SELECT refcount FROM bodies WHERE id = $1), -1)", body).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 3 {
		if _, err := AppendMessage(ctx, p, mbox, NewMessage{Own: []byte("h"), SharedBodyID: body, InternalDate: time.Now(), Size: 6}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Exec(ctx, "INSERT INTO queue (source, shared_body_id) VALUES ('user', $1)", body); err != nil {
		t.Fatal(err)
	}
	if n := refs(); n != 4 {
		t.Fatalf("refcount %d after 3 copies and a queue entry, want 4", n)
	}
	if _, err := p.Exec(ctx, "DELETE FROM messages WHERE mailbox_id = $1 AND uid = 1", mbox); err != nil {
		t.Fatal(err)
	}
	if n := refs(); n != 3 {
		t.Fatalf("refcount %d after expunging one copy, want 3", n)
	}
	if _, err := p.Exec(ctx, "DELETE FROM queue"); err != nil {
		t.Fatal(err)
	}
	if n := refs(); n != 2 {
		t.Fatalf("refcount %d after the queue entry went, want 2", n)
	}
	if _, err := p.Exec(ctx, "DELETE FROM users WHERE address = 'alice@example.org'"); err != nil {
		t.Fatal(err)
	}
	if n := refs(); n != -1 {
		t.Fatalf("body still there (refcount %d) after its user, mailboxes and copies were deleted", n)
	}
	// A copy cannot point at a body that does not exist.
	if _, err := p.Exec(ctx, "INSERT INTO queue (source, shared_body_id) VALUES ('user', $1)", body); err == nil {
		t.Fatal("queue entry referring to a deleted body was accepted")
	}
}

// The database itself refuses records the store must never write: a UID or
// UIDVALIDITY outside 32 bits, a duplicate UID, an unknown queue status.
func TestSchemaRefusesBadRecords(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	p := pool(t, dsn)
	mbox, _ := setupMailbox(t, p)
	for _, c := range []struct {
		what, sql string
		args      []any
	}{
		{"UIDVALIDITY 0", "INSERT INTO mailboxes (username, name, uidvalidity) VALUES ('alice@example.org', 'x', 0)", nil},
		{"UID past 32 bits", "INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size, own, parsed) VALUES ($1, 4294967296, 1, now(), 0, '', '')", []any{mbox}},
		{"duplicate UID", "INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size, own, parsed) VALUES ($1, 7, 1, now(), 0, '', ''), ($1, 7, 2, now(), 0, '', '')", []any{mbox}},
		{"unknown queue status", "INSERT INTO queue (source, status) VALUES ('user', 'lost')", nil},
		{"short body hash", "INSERT INTO bodies (sha256, size, content) VALUES ('\\x00', 0, '')", nil},
	} {
		if _, err := p.Exec(ctx, c.sql, c.args...); err == nil {
			t.Errorf("%s accepted", c.what)
		}
	}
}
