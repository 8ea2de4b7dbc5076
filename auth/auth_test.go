package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

var (
	office = netip.MustParseAddr("198.51.100.7")
	ctx    = context.Background()
)

// countingChecker counts the password checks that reach the store.
type countingChecker struct {
	check Checker
	calls atomic.Int64
}

func (c *countingChecker) Check(ctx context.Context, address, password string) (*storage.User, error) {
	c.calls.Add(1)
	return c.check(ctx, address, password)
}

// newStore opens a real bbolt store with alice@example.com (password
// "correct horse 1").
func newStore(t *testing.T) storage.Store {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateUser(ctx, "alice@example.com", "correct horse 1", false); err != nil {
		t.Fatal(err)
	}
	return store
}

func TestCachedLoginSkipsThePasswordCheck(t *testing.T) {
	store := newStore(t)
	cc := &countingChecker{check: store.Authenticate}
	a := New(Options{Check: cc.Check})
	for i := range 5 {
		r, err := a.Login(ctx, office, "Alice@Example.com", "correct horse 1")
		if err != nil || r.Address != "alice@example.com" {
			t.Fatalf("login %d: %+v, %v", i+1, r, err)
		}
		if r.Cached != (i > 0) {
			t.Errorf("login %d: cached %v", i+1, r.Cached)
		}
	}
	if n := cc.calls.Load(); n != 1 {
		t.Errorf("%d password checks for 5 logins, want 1", n)
	}
	// A wrong password is never answered from the cache.
	if _, err := a.Login(ctx, office, "alice@example.com", "correct horse 2"); !errors.Is(err, ErrFailed) {
		t.Errorf("wrong password: %v, want ErrFailed", err)
	}
	if n := cc.calls.Load(); n != 2 {
		t.Errorf("%d password checks, want the wrong password checked", n)
	}
}

func TestCacheEntriesExpireAndAreBounded(t *testing.T) {
	store := newStore(t)
	cc := &countingChecker{check: store.Authenticate}
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := New(Options{Check: cc.Check, CacheTTL: time.Minute, CacheSize: 3, Now: clock})
	a.Login(ctx, office, "alice@example.com", "correct horse 1")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if r, err := a.Login(ctx, office, "alice@example.com", "correct horse 1"); err != nil || r.Cached {
		t.Errorf("after the TTL: %+v, %v; want a fresh check", r, err)
	}
	for i := range 10 {
		a.cache.put(a.cache.key(fmt.Sprintf("u%d@example.com", i), "pw"), "x", a.cache.generation())
	}
	if n := a.cache.len(); n != 3 {
		t.Errorf("cache holds %d entries, want the bound 3", n)
	}
}

func TestPasswdDropsTheCachedLogin(t *testing.T) {
	store := newStore(t)
	a := New(Options{Check: store.Authenticate})
	guarded := a.Guard(store)
	if _, err := a.Login(ctx, office, "alice@example.com", "correct horse 1"); err != nil {
		t.Fatal(err)
	}
	if err := guarded.SetPassword(ctx, "Alice@example.com", "battery staple 2"); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Login(ctx, office, "alice@example.com", "correct horse 1"); !errors.Is(err, ErrFailed) {
		t.Errorf("old password right after passwd: %+v, %v; want ErrFailed", r, err)
	}
	if _, err := a.Login(ctx, office, "alice@example.com", "battery staple 2"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if err := guarded.DeleteUser(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(ctx, office, "alice@example.com", "battery staple 2"); !errors.Is(err, ErrFailed) {
		t.Errorf("deleted user: %v, want ErrFailed", err)
	}
}

// A password changed behind the node's back (by another node sharing the
// store, or a command writing it directly) reaches the cache through the
// store's events: with Follow listening, the old password is refused.
func TestFollowDropsLoginsChangedElsewhere(t *testing.T) {
	store := newStore(t)
	if err := store.CreateUser(ctx, "bob@example.com", "bob's own pw", false); err != nil {
		t.Fatal(err)
	}
	a := New(Options{Check: store.Authenticate})
	login := func(who, pw string) (Result, error) { return a.Login(ctx, office, who, pw) }
	for _, u := range [][2]string{{"alice@example.com", "correct horse 1"}, {"bob@example.com", "bob's own pw"}} {
		if _, err := login(u[0], u[1]); err != nil {
			t.Fatal(err)
		}
	}
	store.Listen(a.Follow)
	if err := store.SetPassword(ctx, "alice@example.com", "battery staple 2"); err != nil {
		t.Fatal(err)
	}
	if r, err := login("alice@example.com", "correct horse 1"); !errors.Is(err, ErrFailed) {
		t.Errorf("old password after a change elsewhere: %+v, %v; want ErrFailed", r, err)
	}
	if r, err := login("bob@example.com", "bob's own pw"); err != nil || !r.Cached {
		t.Errorf("bob's login: %+v, %v; want still cached", r, err)
	}
	// "Account changes may have been missed": every cached login goes.
	a.Follow(storage.Event{Kind: storage.EventAccount})
	if r, err := login("bob@example.com", "bob's own pw"); err != nil || r.Cached {
		t.Errorf("bob's login after a flush: %+v, %v; want checked afresh", r, err)
	}
	if err := store.DeleteUser(ctx, "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := login("bob@example.com", "bob's own pw"); !errors.Is(err, ErrFailed) {
		t.Errorf("deleted user: %v, want ErrFailed", err)
	}
}

func TestCheckRunningDuringPasswdIsNotCached(t *testing.T) {
	store := newStore(t)
	entered, release := make(chan struct{}), make(chan struct{})
	slow := func(ctx context.Context, address, password string) (*storage.User, error) {
		u, err := store.Authenticate(ctx, address, password)
		close(entered)
		<-release
		return u, err
	}
	a := New(Options{Check: slow})
	done := make(chan error)
	go func() {
		_, err := a.Login(ctx, office, "alice@example.com", "correct horse 1")
		done <- err
	}()
	<-entered // the old password was checked against the old hash
	if err := a.Guard(store).SetPassword(ctx, "alice@example.com", "battery staple 2"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("login that began before passwd: %v", err)
	}
	a.check = store.Authenticate
	if _, err := a.Login(ctx, office, "alice@example.com", "correct horse 1"); !errors.Is(err, ErrFailed) {
		t.Errorf("old password after passwd: %v; the check in flight was cached", err)
	}
}

func TestPoolBoundsChecksAndRefusesBeyondTheQueue(t *testing.T) {
	var running, most atomic.Int64
	release := make(chan struct{})
	blocking := func(ctx context.Context, address, password string) (*storage.User, error) {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return nil, storage.ErrAuthFailed
	}
	a := New(Options{Check: blocking, Workers: 2, Queue: 3})
	a.busyDelay = 0
	results := make(chan error, 10)
	for i := range 10 {
		go func() {
			_, err := a.Login(ctx, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), "alice@example.com", fmt.Sprint(i))
			results <- err
		}()
	}
	// 2 run, 3 wait, 5 are answered busy at once.
	for range 5 {
		select {
		case err := <-results:
			if !errors.Is(err, ErrBusy) {
				t.Fatalf("login beyond the queue: %v, want ErrBusy", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("logins beyond the queue were not refused")
		}
	}
	close(release)
	for range 5 {
		if err := <-results; !errors.Is(err, ErrFailed) {
			t.Errorf("queued login: %v, want ErrFailed", err)
		}
	}
	if m := most.Load(); m != 2 {
		t.Errorf("%d checks ran at once, want the 2 workers", m)
	}
}

func TestParallelGuessingOfOneAccountIsPaced(t *testing.T) {
	store := newStore(t)
	cc := &countingChecker{check: store.Authenticate}
	const interval = 50 * time.Millisecond
	logins := abuse.NewLogins(abuse.LoginOptions{
		FailuresPerAddress:   1000, // only the account bound is under test
		FailuresPerAccount:   20,
		BaseDelay:            time.Millisecond,
		MaxDelay:             200 * time.Millisecond,
		AccountCheckInterval: interval,
	})
	a := New(Options{Check: cc.Check, Logins: logins, Workers: 20, Queue: 100})
	// 20 connections from 20 addresses guess for one second.
	const period = time.Second
	deadline := time.Now().Add(period)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
				a.Login(ctx, addr, "alice@example.com", fmt.Sprintf("guess %d %d", i, n))
			}
		})
	}
	wg.Wait()
	// The first 20 failures are free; then two schedules (failed and clean
	// addresses) of one check per interval each, plus the turns booked
	// within MaxDelay past the end.
	limit := int64(20 + 2*(period+200*time.Millisecond)/interval + 2)
	if n := cc.calls.Load(); n > limit {
		t.Errorf("%d password checks in %v from 20 parallel guessers, want at most %d", n, period, limit)
	}
	if n := cc.calls.Load(); n < 20 {
		t.Errorf("only %d checks: the guessers did not run", n)
	}
	// The owner, cached from an earlier login, is not held up; here the
	// owner never logged in, so one check may wait but gets through.
	if _, err := a.Login(ctx, office, "alice@example.com", "correct horse 1"); err != nil && !errors.Is(err, ErrBusy) {
		t.Errorf("owner during the attack: %v", err)
	}
}

// TestLogNameBoundsWhatALogLineKeeps: an address-sized name is logged
// whole; a 4096-byte one is cut to 256 bytes and says how long it was.
func TestLogNameBoundsWhatALogLineKeeps(t *testing.T) {
	addr := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 189) // 254 bytes
	if got := LogName(addr); got != addr {
		t.Errorf("a 254-byte address logged as %q", got)
	}
	huge := strings.Repeat("x", 4096)
	got := LogName(huge)
	if len(got) > 300 || !strings.HasPrefix(got, strings.Repeat("x", 256)) || !strings.Contains(got, "(4096 bytes)") {
		t.Errorf("a 4096-byte name logged as %d bytes: %q", len(got), got[:min(len(got), 80)])
	}
}
