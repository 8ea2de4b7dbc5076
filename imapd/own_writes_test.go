package imapd

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// deafStore never delivers events: what a session shows of its own writes
// must come from the writes' results.
type deafStore struct {
	storage.Store
}

func (deafStore) Listen(func(storage.Event)) {}

// TestSessionAppliesItsOwnWritesWithoutEvents: APPEND, EXPUNGE and COPY
// into the selected mailbox show their EXISTS and EXPUNGE before the tagged
// OK, at once, even when no event arrives.
func TestSessionAppliesItsOwnWritesWithoutEvents(t *testing.T) {
	e := newTestEnv(t, withStoreWrapper(func(s storage.Store) storage.Store { return deafStore{s} }))
	c := e.loginSelect(alice, "INBOX", nil)
	start := time.Now()
	raw := testMessage(bob, alice, "own", "x")
	app := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := app.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Fatalf("after APPEND: %d messages, want 1", n)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Fatalf("after COPY into INBOX: %d messages, want 2", n)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Fatalf("after EXPUNGE: %d messages, want 1", n)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the commands took %v: they waited for events", took)
	}
}
