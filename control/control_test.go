package control

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

// newDaemon serves a Local over a real Unix socket and returns both sides.
func newDaemon(t *testing.T) (*Local, *Client, string) {
	t.Helper()
	dir := t.TempDir()
	store, err := boltstore.Open(filepath.Join(dir, "pochta.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	local := &Local{Store: store, Version: "test", PollInterval: 5 * time.Minute, MessageLifetime: 7 * 24 * time.Hour}
	sock := filepath.Join(dir, "pochta.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(local, nil)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	client, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	return local, client, sock
}

func TestClientAndLocalGiveTheSameAnswers(t *testing.T) {
	local, client, _ := newDaemon(t)
	ctx := context.Background()
	if _, err := client.AddUser(ctx, "Alice@Example.com", "pw-one-long", true); err != nil {
		t.Fatal(err)
	}
	if _, err := local.AddUser(ctx, "bob@example.com", "pw-two-long", false); err != nil {
		t.Fatal(err)
	}
	viaClient, err := client.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	viaLocal, err := local.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(viaClient) != 2 || viaClient[0].Address != "alice@example.com" || !viaClient[0].Admin || viaClient[1].Admin {
		t.Fatalf("users via socket = %+v", viaClient)
	}
	for i := range viaLocal {
		if !viaLocal[i].Created.Equal(viaClient[i].Created) || viaLocal[i].Address != viaClient[i].Address {
			t.Fatalf("local %+v != client %+v", viaLocal[i], viaClient[i])
		}
	}
	sc, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := local.Status(ctx)
	if !reflect.DeepEqual(sc, sl) || sc.Users != 2 || sc.PollInterval != "5m" {
		t.Fatalf("status via socket %+v, local %+v", sc, sl)
	}
}

func TestErrorsKeepTheirKindAcrossTheSocket(t *testing.T) {
	_, client, _ := newDaemon(t)
	ctx := context.Background()
	if err := client.DeleteUser(ctx, "nobody@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete unknown user: %v, want ErrNotFound", err)
	}
	if _, err := client.AddUser(ctx, "a@example.com", "pw-long-enough", false); err != nil {
		t.Fatal(err)
	}
	_, err := client.AddUser(ctx, "a@example.com", "pw-long-enough", false)
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate user: %v, want ErrExists", err)
	}
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("a@example.com")) {
		t.Fatalf("error should name the address: %v", err)
	}
	if _, err := client.AddUser(ctx, "b@example.com", "", false); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("empty password: %v, want ErrInvalid", err)
	}
}

func TestSettingsPollIntervalDefaultsAndPersists(t *testing.T) {
	_, client, _ := newDaemon(t)
	ctx := context.Background()
	if _, err := client.AddUser(ctx, "a@example.com", "pw-long-enough", false); err != nil {
		t.Fatal(err)
	}
	s, err := client.Settings(ctx, "a@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.PollInterval != "5m" || !s.PollIntervalDefault {
		t.Fatalf("default settings = %+v", s)
	}
	d := 90 * time.Second
	if _, err := client.Settings(ctx, "a@example.com", &SettingsUpdate{PollInterval: &d}); err != nil {
		t.Fatal(err)
	}
	s, _ = client.Settings(ctx, "a@example.com", nil)
	if s.PollInterval != "1m30s" || s.PollIntervalDefault || s.PollIntervalSeconds != 90 {
		t.Fatalf("after update = %+v", s)
	}
	neg := -time.Second
	if _, err := client.Settings(ctx, "a@example.com", &SettingsUpdate{PollInterval: &neg}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("negative interval: %v", err)
	}
}

func TestBackupThroughTheSocketIsAnOpenableDatabase(t *testing.T) {
	_, client, _ := newDaemon(t)
	ctx := context.Background()
	if _, err := client.AddUser(ctx, "a@example.com", "pw-long-enough", false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := client.Backup(ctx, &buf)
	if err != nil || n == 0 || int64(buf.Len()) != n {
		t.Fatalf("backup: n=%d len=%d err=%v", n, buf.Len(), err)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	restored, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("backup does not open: %v", err)
	}
	defer restored.Close()
	if _, err := restored.User(ctx, "a@example.com"); err != nil {
		t.Fatalf("user missing from backup: %v", err)
	}
}

func TestSocketIsPrivateAndStaleSocketIsReplaced(t *testing.T) {
	_, _, sock := newDaemon(t)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Listen(sock); err == nil {
		t.Fatal("Listen replaced a socket a live daemon answers on")
	}

	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := Listen(stale)
	if err != nil {
		t.Fatal(err)
	}
	// Closing a unix listener removes its file; recreate the leftover a
	// killed daemon would leave behind.
	l.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	l.Close()
	if _, err := Dial(stale); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("dial stale socket: %v, want ErrNoDaemon", err)
	}
	l2, err := Listen(stale)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l2.Close()
}

func TestAddUserRefusesAddressesOutsideTheLocalDomains(t *testing.T) {
	local, client, _ := newDaemon(t)
	local.Domains = []string{"example.com"}
	_, err := client.AddUser(context.Background(), "eve@elsewhere.test", "pw-long-enough", false)
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "example.com") {
		t.Fatalf("add user outside the domains: %v", err)
	}
	if _, err := client.AddUser(context.Background(), "eve@Example.com", "pw-long-enough", false); err != nil {
		t.Fatalf("add user in a local domain: %v", err)
	}
}

// One password rule, whichever way the request comes.
func TestPasswordRuleHoldsThroughTheSocketAndDirectly(t *testing.T) {
	local, client, _ := newDaemon(t)
	ctx := context.Background()
	const addr = "frederick@example.com"
	if _, err := local.AddUser(ctx, addr, "a-good-password", false); err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"":                      "too short",
		"seven77":               "too short",
		"        ":              "other than spaces",
		" \t abc  \u00a0d  e ":  "other than spaces",
		"frederick":             "must not be the address",
		"FREDERICK":             "must not be the address",
		"Frederick@Example.com": "must not be the address",
	}
	for name, api := range map[string]API{"local": local, "client": client} {
		for pw, want := range refused {
			if _, err := api.AddUser(ctx, "frederick@example.com", pw, false); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: add with password %q: %v, want %q", name, pw, err, want)
			}
			if err := api.SetPassword(ctx, addr, pw); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: passwd %q: %v, want %q", name, pw, err, want)
			}
		}
		if err := api.SetPassword(ctx, addr, "correct horse"); err != nil {
			t.Errorf("%s: a password with a space inside: %v", name, err)
		}
		if err := api.SetPassword(ctx, addr, "frederick-2"); err != nil {
			t.Errorf("%s: a good password: %v", name, err)
		}
	}
	if _, err := local.Store.Authenticate(ctx, addr, "frederick-2"); err != nil {
		t.Fatalf("the accepted password does not log in: %v", err)
	}
}

func TestDeleteUserEndsTheirSessionsAfterTheDeletion(t *testing.T) {
	local, client, _ := newDaemon(t)
	ctx := context.Background()
	var ended []string
	local.OnUserDeleted = func(address string) {
		if _, err := local.Store.User(ctx, address); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("OnUserDeleted(%s) before the user was gone: %v", address, err)
		}
		ended = append(ended, address)
	}
	if _, err := local.AddUser(ctx, "erin@example.com", "erin-password", false); err != nil {
		t.Fatal(err)
	}
	if err := client.DeleteUser(ctx, "Erin@Example.com"); err != nil {
		t.Fatal(err)
	}
	if err := client.DeleteUser(ctx, "erin@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if !reflect.DeepEqual(ended, []string{"erin@example.com"}) {
		t.Fatalf("sessions ended for %v, want erin@example.com once", ended)
	}
}
