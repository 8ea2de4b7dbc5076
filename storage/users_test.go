package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestCreateUserStoresAddressLowerCasedAndRefusesDuplicates(t *testing.T) {
	s, _ := openTestStore(t)
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
	wantErr(t, s.CreateUser(ctx, "alice@EXAMPLE.com", "other", false), ErrExists, "duplicate user")
}

func TestCreateUserRefusesInvalidAddressesAndPasswords(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	for _, addr := range []string{
		"", "alice", "@example.com", "alice@", "al ice@example.com", "alice@exa mple.com",
		"alice@@example.com", "a@b@example.com", "alice\x00@example.com", "alice@example..com",
		".alice@example.com", "al..ice@example.com", "<alice>@example.com", "alice@-example.com",
		strings.Repeat("a", 65) + "@example.com", "alice@example.com\n",
	} {
		wantErr(t, s.CreateUser(ctx, addr, "secret", false), ErrInvalid, "address "+addr)
	}
	wantErr(t, s.CreateUser(ctx, "bob@example.com", "", false), ErrInvalid, "empty password")
	wantErr(t, s.CreateUser(ctx, "bob@example.com", strings.Repeat("p", 73), false), ErrInvalid, "73-byte password")
	if _, err := s.User(ctx, "bob@example.com"); err == nil {
		t.Error("a refused user was stored")
	}
}

func TestAuthenticateAcceptsOnlyTheRightPassword(t *testing.T) {
	s, _ := openTestStore(t)
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
	wantErr(t, err, ErrAuthFailed, "wrong password")
	_, err = s.Authenticate(ctx, "nobody@example.com", "secret")
	wantErr(t, err, ErrAuthFailed, "unknown user")
	_, err = s.Authenticate(ctx, "not an address", "secret")
	wantErr(t, err, ErrAuthFailed, "invalid address")
	// bcrypt only looks at 72 bytes: more must not log in.
	if err := s.SetPassword(ctx, "alice@example.com", strings.Repeat("p", 72)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(ctx, "alice@example.com", strings.Repeat("p", 72)+"extra")
	wantErr(t, err, ErrAuthFailed, "password with extra bytes past 72")
}

func TestAuthenticateUnknownUserTakesAsLongAsWrongPassword(t *testing.T) {
	// A cost high enough that a bcrypt comparison dominates everything else.
	const cost = 9
	s, err := openBolt(filepath.Join(t.TempDir(), "pochta.db"), Options{PasswordCost: cost})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	if got, err := bcrypt.Cost(s.dummyHash); err != nil || got != cost {
		t.Fatalf("dummy hash cost %d (%v), want %d", got, err, cost)
	}
	fastest := func(addr string) time.Duration {
		best := time.Hour
		for range 5 {
			start := time.Now()
			if _, err := s.Authenticate(ctx, addr, "wrong"); err == nil {
				t.Fatal("wrong password accepted")
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	wrong := fastest("alice@example.com")
	unknown := fastest("nobody@example.com")
	// Without the dummy comparison an unknown user answers in microseconds,
	// thousands of times faster; the bound is loose (a tenth) because other
	// test packages run on the same cores at the same time.
	if unknown < wrong/10 {
		t.Errorf("unknown user answered in %v, wrong password in %v", unknown, wrong)
	}
}

func TestSetPasswordReplacesTheOldOne(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	if err := s.SetPassword(ctx, "ALICE@example.com", "new-secret"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Authenticate(ctx, "alice@example.com", "secret")
	wantErr(t, err, ErrAuthFailed, "old password")
	if _, err := s.Authenticate(ctx, "alice@example.com", "new-secret"); err != nil {
		t.Errorf("new password: %v", err)
	}
	wantErr(t, s.SetPassword(ctx, "nobody@example.com", "x"), ErrNotFound, "unknown user")
	wantErr(t, s.SetPassword(ctx, "alice@example.com", ""), ErrInvalid, "empty password")
}

func TestDeleteUserRemovesMailboxesAndMail(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	mustCreateUser(t, s, "bob@example.com")
	inbox := mustMailbox(t, s, "bob@example.com", Inbox)
	if _, err := s.Deliver(ctx, &Delivery{
		Sender: "alice@example.com", SentCopy: &NewMessage{Raw: []byte(simpleMessage("hi"))},
		Recipients: []string{"bob@example.com"}, Copy: &NewMessage{Raw: []byte(simpleMessage("hi"))},
	}); err != nil {
		t.Fatal(err)
	}
	events := listen(s)
	if err := s.DeleteUser(ctx, "Bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "bob@example.com"); err == nil {
		t.Error("user still there")
	}
	var sawInbox bool
	for _, ev := range events.snapshot() {
		if ev.Kind == EventMailboxes && ev.MailboxID == inbox.ID && ev.User == "bob@example.com" {
			sawInbox = true
		}
	}
	if !sawInbox {
		t.Error("no EventMailboxes for the deleted user's INBOX")
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
	if got := mustMailbox(t, s, "bob@example.com", Inbox); got.Messages != 0 || got.ID == inbox.ID || got.UIDValidity == inbox.UIDValidity {
		t.Errorf("recreated INBOX: %+v (old %+v)", got, inbox)
	}
	_, err = s.UIDs(ctx, "bob@example.com", inbox.ID)
	wantErr(t, err, ErrNotFound, "old mailbox ID")
	wantErr(t, s.DeleteUser(ctx, "nobody@example.com"), ErrNotFound, "unknown user")
}

func TestUsersAreListedByAddress(t *testing.T) {
	s, _ := openTestStore(t)
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

func TestSettingsPersistAcrossReopen(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	if err := s.SetSettings(ctx, "alice@example.com", Settings{PollInterval: 90 * time.Second}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.SetSettings(ctx, "alice@example.com", Settings{PollInterval: -1}), ErrInvalid, "negative interval")
	wantErr(t, s.SetSettings(ctx, "nobody@example.com", Settings{}), ErrNotFound, "unknown user")
	s = reopen(t, s, path)
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

func TestSecondOpenFailsWithErrLocked(t *testing.T) {
	s, path := openTestStore(t)
	opts := testOptions()
	opts.LockTimeout = 100 * time.Millisecond
	start := time.Now()
	_, err := Open(path, opts)
	wantErr(t, err, ErrLocked, "second open")
	if !strings.Contains(err.Error(), "database is in use by another process") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should say the database is in use and name it", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s2.Close()
}

func TestDatabaseFileIsPrivate(t *testing.T) {
	_, path := openTestStore(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode %v, want 0600", mode)
	}
}
