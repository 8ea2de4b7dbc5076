// Package auth owns password logins for every pochta server: SMTP AUTH and
// IMAP LOGIN/AUTHENTICATE alike go through one Authenticator, which puts
// the failed-login throttle (package abuse), a cache of successful logins
// and a bounded pool of password checkers in front of the store's bcrypt
// check.
//
// What it promises:
//   - Order: a blocked address is refused before anything else (so a
//     blocked guesser learns nothing, not even from the cache); then a
//     cached login succeeds at once; then the throttle's waits and pacing
//     apply; only then is the password checked.
//   - Password checks (bcrypt, ~55 ms of a core at cost 10) run on at most
//     Workers goroutines at once (by default one fewer than the cores, at
//     least one); at most Queue more wait for a turn, and beyond that a
//     login is answered ErrBusy (a temporary failure, after a second so
//     that guessers do not just retry faster), so logins can never take
//     every core from logged-in sessions.
//   - The cache holds only successful logins, keyed by HMAC-SHA256 under a
//     random per-process key of the address and password (neither is kept
//     in memory in the clear, and the keys mean nothing to another
//     process). An entry lives at most CacheTTL; at most CacheSize are
//     kept, the least recently used dropped first.
//   - Forget (called by the Store returned by Guard on SetPassword and
//     DeleteUser; Follow, a store listener, calls it on every
//     storage.EventAccount, so a change another node made counts too)
//     drops every cached login of the address before the
//     change is reported done, and a check that was running while the
//     password changed never caches its result: after `pochta user passwd`
//     returns, the old password is refused. Without a running daemon there
//     is no cache, so the CLI writing the database directly needs nothing.
//   - Safe for concurrent use.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/storage"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultCacheTTL  = 10 * time.Minute
	DefaultCacheSize = 10000
	// queuePerWorker is the default queue length per worker: enough for
	// bursts of a few hundred ms of logins, short enough that a waiter's
	// turn comes well within a client's timeout.
	queuePerWorker = 8
	// busyDelay is how long a login refused as busy waits for its answer:
	// answered at once, a guesser would only retry faster, spending the
	// cores on connections instead of on bcrypt.
	busyDelay = time.Second
)

// Errors of Login; test them with errors.Is (RefusedError with errors.As).
var (
	// ErrFailed: wrong address or password.
	ErrFailed = errors.New("auth: wrong address or password")
	// ErrBusy: too many logins are being checked, or the account's paced
	// checks are booked; the client should try again later.
	ErrBusy = errors.New("auth: too many logins in progress")
)

// RefusedError says the client's address is blocked after too many failed
// logins; its password was not checked.
type RefusedError struct{ Until time.Time }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("auth: too many failed logins; refused until %s", e.Until.UTC().Format(time.RFC3339))
}

// Checker checks a password, as storage.Store.Authenticate does: it returns
// the user, or an error wrapping storage.ErrAuthFailed (or ErrNotFound,
// ErrInvalid) for a wrong address or password.
type Checker func(ctx context.Context, address, password string) (*storage.User, error)

// Options configure an Authenticator.
type Options struct {
	// Check is the password check. Required.
	Check Checker
	// Logins throttles failed logins; nil means no throttling.
	Logins *abuse.Logins
	// Workers bounds the password checks running at once; 0 means
	// GOMAXPROCS-1 (at least 1), so one core's worth is always left to
	// the sessions that are logged in.
	Workers int
	// Queue bounds the logins waiting for a worker; 0 means 8 per worker.
	Queue int
	// CacheTTL and CacheSize bound the cache of successful logins; 0 means
	// the defaults. A negative CacheSize disables the cache.
	CacheTTL  time.Duration
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Authenticator checks logins. Create it with New and share one between
// every server.
type Authenticator struct {
	check  Checker
	logins *abuse.Logins
	cache  *cache

	workers chan struct{} // a token per running check
	queue   int64         // bound on waiters
	// busyDelay delays answering a login refused because the queue is full.
	busyDelay time.Duration
	waiting   atomic.Int64
}

// New returns an Authenticator with opts, zero fields replaced by the
// defaults.
func New(opts Options) *Authenticator {
	if opts.Workers <= 0 {
		opts.Workers = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if opts.Queue <= 0 {
		opts.Queue = queuePerWorker * opts.Workers
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Authenticator{
		check:     opts.Check,
		logins:    opts.Logins,
		cache:     newCache(opts.CacheSize, opts.CacheTTL, opts.Now),
		workers:   make(chan struct{}, opts.Workers),
		queue:     int64(opts.Queue),
		busyDelay: busyDelay,
	}
}

// Result tells the caller what happened, for its logs and metrics.
type Result struct {
	// Address is the logged-in user's canonical address (on success).
	Address string
	// Cached says the login was answered from the cache.
	Cached bool
	// Throttled says the attempt was slowed, refused or paced by Logins.
	Throttled bool
	// Blocked says this failure blocked the client address (log it once).
	Blocked bool
}

// Login checks account's password for a client at addr. It returns
// ErrFailed, ErrBusy, a *RefusedError, ctx's error, or another error from
// the store (a server fault). The waits the throttle asks for happen here
// and end early when ctx ends.
func (a *Authenticator) Login(ctx context.Context, addr netip.Addr, account, password string) (Result, error) {
	account = strings.ToLower(strings.TrimSpace(account))
	var r Result
	var waited time.Duration
	if a.logins != nil {
		v := a.logins.CheckAddress(addr)
		if v.Refused {
			r.Throttled = true
			return r, &RefusedError{Until: v.Until}
		}
	}
	key := a.cache.key(account, password)
	if address, ok := a.cache.get(key); ok {
		if a.logins != nil {
			a.logins.Succeeded(addr)
		}
		return Result{Address: address, Cached: true}, nil
	}
	if a.logins != nil {
		v := a.logins.Check(addr, account)
		switch {
		case v.Refused:
			r.Throttled = true
			return r, &RefusedError{Until: v.Until}
		case v.Busy:
			r.Throttled = true
			return r, ErrBusy
		case v.Delay > 0:
			r.Throttled = true
			if err := sleep(ctx, v.Delay); err != nil {
				return r, err
			}
			waited = v.Delay
		}
	}
	gen := a.cache.generation()
	u, err := a.checkOnPool(ctx, account, password)
	switch {
	case err == nil:
		if a.logins != nil {
			a.logins.Succeeded(addr)
		}
		a.cache.put(key, u.Address, gen)
		r.Address = u.Address
		return r, nil
	case errors.Is(err, storage.ErrAuthFailed), errors.Is(err, storage.ErrInvalid), errors.Is(err, storage.ErrNotFound):
		if a.logins != nil {
			delay, blocked := a.logins.Failed(addr, account, waited)
			r.Blocked = blocked
			if delay > 0 {
				r.Throttled = true
				if err := sleep(ctx, delay); err != nil {
					return r, err
				}
			}
		}
		return r, ErrFailed
	}
	return r, err
}

// checkOnPool runs the password check on one of the workers' turns.
func (a *Authenticator) checkOnPool(ctx context.Context, account, password string) (*storage.User, error) {
	select {
	case a.workers <- struct{}{}:
	default:
		if a.waiting.Add(1) > a.queue {
			a.waiting.Add(-1)
			sleep(ctx, a.busyDelay)
			return nil, ErrBusy
		}
		select {
		case a.workers <- struct{}{}:
			a.waiting.Add(-1)
		case <-ctx.Done():
			a.waiting.Add(-1)
			return nil, ctx.Err()
		}
	}
	defer func() { <-a.workers }()
	u, err := a.check(ctx, account, password)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// Forget drops every cached login of address, and keeps checks running now
// from caching theirs.
func (a *Authenticator) Forget(address string) {
	if address = strings.ToLower(strings.TrimSpace(address)); address != "" {
		a.cache.forget(address)
	}
}

// Follow is a storage listener (Store.Listen): on a storage.EventAccount,
// a password changed or a user deleted, perhaps by another node sharing
// the store, it forgets the user's cached logins; one without a user
// (account changes may have been missed) forgets every cached login.
func (a *Authenticator) Follow(ev storage.Event) {
	if ev.Kind != storage.EventAccount {
		return
	}
	if ev.User == "" {
		a.cache.forget("")
		return
	}
	a.Forget(ev.User)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Guard returns store with SetPassword and DeleteUser made to call Forget
// once they have committed (and, for a failed call, too: the change may
// have been committed before the error). Give it to everything that
// changes users in the daemon (the control API).
func (a *Authenticator) Guard(store storage.Store) storage.Store {
	return &guardedStore{Store: store, auth: a}
}

type guardedStore struct {
	storage.Store
	auth *Authenticator
}

func (g *guardedStore) SetPassword(ctx context.Context, address, password string) error {
	defer g.auth.Forget(address)
	return g.Store.SetPassword(ctx, address, password)
}

func (g *guardedStore) DeleteUser(ctx context.Context, address string) error {
	defer g.auth.Forget(address)
	return g.Store.DeleteUser(ctx, address)
}

// maxLoggedName is how much of a login name a log line keeps: an address
// is at most 254 bytes (RFC 5321), and a client may send 64 KiB.
const maxLoggedName = 256

// LogName is a login name as log lines show it: whole when it could be
// an address, else its first 256 bytes and how long it was, so a failed
// login with a huge name cannot flood the log.
func LogName(name string) string {
	if len(name) <= maxLoggedName {
		return name
	}
	return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(name[:maxLoggedName], ""), len(name))
}
