package storagetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
)

func usersStoredLowerCasedNoDuplicates(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	if err := s.CreateUser(ctx, "Alice@Example.COM", "secret", true); err != nil {
		t.Fatal(err)
	}
	u, err := s.User(ctx, "ALICE@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if u.Address != "alice@example.com" || !u.Admin || u.Created.IsZero() {
		t.Errorf("got %+v", u)
	}
	wantErr(t, s.CreateUser(ctx, "alice@EXAMPLE.com", "other", false), storage.ErrExists, "duplicate user")
}

func usersInvalidAddressesAndPasswordsRefused(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	for _, addr := range []string{
		"", "alice", "@example.com", "alice@", "al ice@example.com", "alice@exa mple.com",
		"alice@@example.com", "a@b@example.com", "alice\x00@example.com", "alice@example..com",
		".alice@example.com", "al..ice@example.com", "<alice>@example.com", "alice@-example.com",
		strings.Repeat("a", 65) + "@example.com", "alice@example.com\n",
	} {
		wantErr(t, s.CreateUser(ctx, addr, "secret", false), storage.ErrInvalid, "address "+addr)
	}
	wantErr(t, s.CreateUser(ctx, "bob@example.com", "", false), storage.ErrInvalid, "empty password")
	wantErr(t, s.CreateUser(ctx, "bob@example.com", strings.Repeat("p", 73), false), storage.ErrInvalid, "73-byte password")
	if _, err := s.User(ctx, "bob@example.com"); err == nil {
		t.Error("a refused user was stored")
	}
}

func authenticateAcceptsOnlyTheRightPassword(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	u, err := s.Authenticate(ctx, "Alice@Example.com", "secret")
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	if u.Address != "alice@example.com" {
		t.Errorf("address %q", u.Address)
	}
	_, err = s.Authenticate(ctx, "alice@example.com", "Secret")
	wantErr(t, err, storage.ErrAuthFailed, "wrong password")
	_, err = s.Authenticate(ctx, "nobody@example.com", "secret")
	wantErr(t, err, storage.ErrAuthFailed, "unknown user")
	_, err = s.Authenticate(ctx, "not an address", "secret")
	wantErr(t, err, storage.ErrAuthFailed, "invalid address")
	// bcrypt only looks at 72 bytes: more must not log in.
	if err := s.SetPassword(ctx, "alice@example.com", strings.Repeat("p", 72)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(ctx, "alice@example.com", strings.Repeat("p", 72)+"extra")
	wantErr(t, err, storage.ErrAuthFailed, "password with extra bytes past 72")
}

func setPasswordReplacesTheOldOne(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	events := Listen(s)
	if err := s.SetPassword(ctx, "ALICE@example.com", "new-secret"); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events.Snapshot(), func(ev storage.Event) bool {
		return ev.Kind == storage.EventAccount && ev.User == "alice@example.com" && !ev.Deleted
	}) {
		t.Error("no EventAccount for the password change: other nodes would keep the old password's cached logins")
	}
	_, err := s.Authenticate(ctx, "alice@example.com", "secret")
	wantErr(t, err, storage.ErrAuthFailed, "old password")
	if _, err := s.Authenticate(ctx, "alice@example.com", "new-secret"); err != nil {
		t.Errorf("new password: %v", err)
	}
	wantErr(t, s.SetPassword(ctx, "nobody@example.com", "x"), storage.ErrNotFound, "unknown user")
	wantErr(t, s.SetPassword(ctx, "alice@example.com", ""), storage.ErrInvalid, "empty password")
}

func deleteUserRemovesMailboxesAndMail(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	inbox := mustMailbox(t, s, "bob@example.com", storage.Inbox)
	if _, err := s.Deliver(ctx, &storage.Delivery{
		Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: []byte(simpleMessage("hi"))},
		Recipients: []string{"bob@example.com"}, Copy: &storage.NewMessage{Raw: []byte(simpleMessage("hi"))},
	}); err != nil {
		t.Fatal(err)
	}
	events := Listen(s)
	if err := s.DeleteUser(ctx, "Bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "bob@example.com"); err == nil {
		t.Error("user still there")
	}
	var sawInbox, sawAccount bool
	for _, ev := range events.Snapshot() {
		if ev.Kind == storage.EventMailboxes && ev.MailboxID == inbox.ID && ev.User == "bob@example.com" {
			sawInbox = true
		}
		if ev.Kind == storage.EventAccount && ev.User == "bob@example.com" && ev.Deleted {
			sawAccount = true
		}
	}
	if !sawInbox {
		t.Error("no EventMailboxes for the deleted user's INBOX")
	}
	if !sawAccount {
		t.Error("no EventAccount (Deleted) for the deleted user: other nodes would keep its cached logins")
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Users != 1 || st.Messages != 1 {
		t.Errorf("stats after delete: %+v, want 1 user and alice's Sent copy", st)
	}
	// A new user under the same address starts empty and cannot reach the
	// old mailbox by its ID.
	mustCreateUser(t, s, "bob@example.com")
	if got := mustMailbox(t, s, "bob@example.com", storage.Inbox); got.Messages != 0 || got.ID == inbox.ID || got.UIDValidity == inbox.UIDValidity {
		t.Errorf("recreated INBOX: %+v (old %+v)", got, inbox)
	}
	_, err = s.UIDs(ctx, "bob@example.com", inbox.ID)
	wantErr(t, err, storage.ErrNotFound, "old mailbox ID")
	wantErr(t, s.DeleteUser(ctx, "nobody@example.com"), storage.ErrNotFound, "unknown user")
}

func usersListedByAddress(t *testing.T, b Backend) {
	s, _ := b.New(t)
	for _, a := range []string{"carol@example.com", "alice@example.com", "bob@example.org"} {
		mustCreateUser(t, s, a)
	}
	users, err := s.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range users {
		got = append(got, u.Address)
	}
	if want := "alice@example.com bob@example.org carol@example.com"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func settingsStored(t *testing.T, b Backend) {
	s, path := b.New(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	if err := s.SetSettings(ctx, "alice@example.com", storage.Settings{PollInterval: 90 * time.Second}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.SetSettings(ctx, "alice@example.com", storage.Settings{PollInterval: -1}), storage.ErrInvalid, "negative interval")
	wantErr(t, s.SetSettings(ctx, "nobody@example.com", storage.Settings{}), storage.ErrNotFound, "unknown user")
	s = b.reopen(t, s, path)
	u, err := s.User(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if u.Settings.PollInterval != 90*time.Second {
		t.Errorf("poll interval %v after reopen", u.Settings.PollInterval)
	}
	if _, err := s.Authenticate(ctx, "alice@example.com", "secret"); err != nil {
		t.Errorf("password lost across reopen: %v", err)
	}
}
