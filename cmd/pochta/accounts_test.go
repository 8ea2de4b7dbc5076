package main

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

// The account listener forgets cached logins on every account event, and
// ends a user's sessions only once the user is really gone: a forged
// deletion (anyone who may connect to a PostgreSQL database can NOTIFY)
// ends nobody's.
func TestFollowAccountsEndsOnlyDeletedUsers(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if err := store.CreateUser(ctx, u, "pw", false); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var forgotten, ended []string
	var work sync.WaitGroup
	follow := followAccounts(store,
		func(ev storage.Event) { mu.Lock(); forgotten = append(forgotten, ev.User); mu.Unlock() },
		func(user string) { mu.Lock(); ended = append(ended, user); mu.Unlock() }, &work)

	follow(storage.Event{Kind: storage.EventAccount, User: "alice@example.test", Deleted: true}) // forged: alice exists
	if err := store.DeleteUser(ctx, "bob@example.test"); err != nil {
		t.Fatal(err)
	}
	follow(storage.Event{Kind: storage.EventAccount, User: "bob@example.test", Deleted: true})
	follow(storage.Event{Kind: storage.EventAccount}) // "may have missed some": forget all, end none
	work.Wait()
	if !slices.Equal(ended, []string{"bob@example.test"}) {
		t.Errorf("sessions ended for %q, want only the deleted bob's", ended)
	}
	if !slices.Equal(forgotten, []string{"alice@example.test", "bob@example.test", ""}) {
		t.Errorf("cache told of %q, want every event", forgotten)
	}
}
