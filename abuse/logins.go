package abuse

import (
	"net/netip"
	"sync"
	"time"
)

// Defaults applied by NewLogins to zero LoginOptions fields. They match
// config's [limits] defaults.
const (
	DefaultFailuresPerAddress = 10
	DefaultFailuresPerAccount = 20
	DefaultBlockTime          = 15 * time.Minute
	DefaultBaseDelay          = 500 * time.Millisecond
	DefaultMaxDelay           = 5 * time.Second
	// DefaultAccountCheckInterval paces the password checks of an account
	// under attack: at most one per interval, from all addresses together.
	DefaultAccountCheckInterval = 250 * time.Millisecond
)

// freeFailures is how many failures an address gets answered at once: a
// user who mistypes a password once or twice should not wait for it.
const freeFailures = 2

// LoginOptions configure a Logins throttle.
type LoginOptions struct {
	// FailuresPerAddress is how many failed logins one client address may
	// make before its logins are refused for BlockTime.
	FailuresPerAddress int
	// FailuresPerAccount is how many failed logins an account may see, from
	// any address, before its logins from addresses that have failed are
	// slowed by MaxDelay. Addresses without failures are not affected.
	FailuresPerAccount int
	// BlockTime is how long a blocked address stays refused, and how long
	// failures are remembered after the last one.
	BlockTime time.Duration
	// BaseDelay is the wait before answering the first slowed failure (the
	// third from an address); each further failure doubles it, up to
	// MaxDelay.
	BaseDelay time.Duration
	// MaxDelay bounds every wait Logins asks for: the wait before a check
	// and the wait after its failure together (see Failed).
	MaxDelay time.Duration
	// AccountCheckInterval paces an account that has seen
	// FailuresPerAccount failures: its password checks, from every
	// connection and address together, are spaced at least this far
	// apart, and an attempt that would wait longer than MaxDelay for its
	// turn is refused as busy. This bounds parallel guessing from many
	// connections and addresses to one check per interval.
	AccountCheckInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now Clock
}

// Logins throttles failed logins per client address and per account. Create
// it with NewLogins and share one between every server.
type Logins struct {
	opts LoginOptions

	mu       sync.Mutex
	clients  map[netip.Prefix]*clientFailures
	accounts map[string]*accountFailures
	// The tables are swept when they have doubled since the last sweep,
	// or a BlockTime after it, whichever comes first.
	sweepAt   int
	lastSweep time.Time
}

type clientFailures struct {
	failures     int
	last         time.Time
	blockedUntil time.Time
}

type accountFailures struct {
	failures int
	last     time.Time
	// Once the account is under attack, its password checks are paced on
	// two schedules: one for addresses that have failed (suspects), one
	// for addresses that have not, so that guessers who keep failing
	// cannot book every turn of an owner logging in from a clean address.
	// Each is the earliest time its next check may run.
	nextSuspect, nextFresh time.Time
}

// NewLogins returns a throttle with opts, zero fields replaced by the
// defaults.
func NewLogins(opts LoginOptions) *Logins {
	if opts.FailuresPerAddress <= 0 {
		opts.FailuresPerAddress = DefaultFailuresPerAddress
	}
	if opts.FailuresPerAccount <= 0 {
		opts.FailuresPerAccount = DefaultFailuresPerAccount
	}
	if opts.BlockTime <= 0 {
		opts.BlockTime = DefaultBlockTime
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = DefaultBaseDelay
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.AccountCheckInterval <= 0 {
		opts.AccountCheckInterval = DefaultAccountCheckInterval
	}
	return &Logins{
		opts:     opts,
		clients:  make(map[netip.Prefix]*clientFailures),
		accounts: make(map[string]*accountFailures),
		sweepAt:  sweepMin,
	}
}

// Verdict is what to do with a login attempt before its password is
// checked.
type Verdict struct {
	// Refused says the client address is blocked: answer with a temporary
	// refusal and do not check the password.
	Refused bool
	// Until is when the block ends (set with Refused).
	Until time.Time
	// Busy says the account is under attack and its password checks are
	// booked beyond MaxDelay: answer with a temporary failure and do not
	// check the password.
	Busy bool
	// Delay is how long to wait before checking the password: set when the
	// account is under attack (MaxDelay when this address has failed
	// before, else the wait for the account's next check).
	Delay time.Duration
}

// CheckAddress reports whether addr is blocked (Verdict.Refused and
// Until), without judging or booking anything for an account: it is asked
// before a login cache, which must not answer a blocked guesser.
func (l *Logins) CheckAddress(addr netip.Addr) Verdict {
	now := l.opts.Now.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.client(clientKey(addr), now, false); c != nil && now.Before(c.blockedUntil) {
		return Verdict{Refused: true, Until: c.blockedUntil}
	}
	return Verdict{}
}

// Check judges a login attempt from addr for account before its password
// is checked. An attempt on an account under attack that is not refused
// books one of the account's paced checks: the caller waits Delay and then
// checks the password.
func (l *Logins) Check(addr netip.Addr, account string) Verdict {
	now := l.opts.Now.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.client(clientKey(addr), now, false)
	if c != nil && now.Before(c.blockedUntil) {
		return Verdict{Refused: true, Until: c.blockedUntil}
	}
	a := l.attackedAccount(accountKey(account), now)
	if a == nil {
		return Verdict{}
	}
	// A suspect always waits MaxDelay; a clean address only for its turn.
	start, next := now, &a.nextFresh
	if c != nil && c.failures > 0 {
		start, next = now.Add(l.opts.MaxDelay), &a.nextSuspect
	}
	if start.Before(*next) {
		start = *next
	}
	delay := start.Sub(now)
	if delay > l.opts.MaxDelay {
		return Verdict{Busy: true}
	}
	*next = start.Add(l.opts.AccountCheckInterval)
	if delay == 0 {
		return Verdict{}
	}
	return Verdict{Delay: delay}
}

// Failed records a failed login from addr for account. waited is how long
// the caller already waited before the check (Verdict.Delay). It returns
// how long to wait before answering the failure, so that both waits
// together stay within MaxDelay, and whether this failure blocked the
// address (so the caller can log that once).
func (l *Logins) Failed(addr netip.Addr, account string, waited time.Duration) (delay time.Duration, blocked bool) {
	now := l.opts.Now.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	c := l.client(clientKey(addr), now, true)
	c.failures++
	c.last = now
	key := accountKey(account)
	a := l.accounts[key]
	if a == nil || now.Sub(a.last) >= l.opts.BlockTime {
		a = &accountFailures{}
		l.accounts[key] = a
	}
	a.failures++
	a.last = now

	delay = l.delayFor(c.failures)
	if a.failures >= l.opts.FailuresPerAccount {
		delay = l.opts.MaxDelay
	}
	if c.failures >= l.opts.FailuresPerAddress && c.blockedUntil.IsZero() {
		c.blockedUntil = now.Add(l.opts.BlockTime)
		blocked = true
	}
	return max(0, min(delay, l.opts.MaxDelay-waited)), blocked
}

// Succeeded records a successful login from addr: the address's failures
// are forgotten. The account's are not, so an owner who logs in regularly
// does not wipe out the evidence of someone guessing their password.
func (l *Logins) Succeeded(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := clientKey(addr)
	// A blocked address cannot succeed (Check refuses it first), but a
	// caller that skipped Check must not lift a block either.
	if c := l.clients[key]; c != nil && c.blockedUntil.IsZero() {
		delete(l.clients, key)
	}
}

// delayFor is the wait before answering the n-th failure from an address:
// nothing for the first freeFailures, then BaseDelay doubling, capped.
func (l *Logins) delayFor(n int) time.Duration {
	if n <= freeFailures {
		return 0
	}
	d := l.opts.BaseDelay
	for i := freeFailures + 1; i < n && d < l.opts.MaxDelay; i++ {
		d *= 2
	}
	return min(d, l.opts.MaxDelay)
}

// client returns the live record for key, forgetting it when it has
// expired; with create it makes one.
func (l *Logins) client(key netip.Prefix, now time.Time, create bool) *clientFailures {
	c := l.clients[key]
	if c != nil && l.clientExpired(c, now) {
		delete(l.clients, key)
		c = nil
	}
	if c == nil && create {
		c = &clientFailures{}
		l.clients[key] = c
	}
	return c
}

func (l *Logins) clientExpired(c *clientFailures, now time.Time) bool {
	if !c.blockedUntil.IsZero() {
		return !now.Before(c.blockedUntil)
	}
	return now.Sub(c.last) >= l.opts.BlockTime
}

// attackedAccount returns account's record when it has seen
// FailuresPerAccount failures within BlockTime, else nil.
func (l *Logins) attackedAccount(account string, now time.Time) *accountFailures {
	a := l.accounts[account]
	if a != nil && now.Sub(a.last) < l.opts.BlockTime && a.failures >= l.opts.FailuresPerAccount {
		return a
	}
	return nil
}

// sweep drops expired records once the tables have doubled since the last
// sweep or a BlockTime has passed, so their size follows the failures of
// the last BlockTime (at most twice that).
func (l *Logins) sweep(now time.Time) {
	n := len(l.clients) + len(l.accounts)
	if n < sweepMin || n < l.sweepAt && now.Sub(l.lastSweep) < l.opts.BlockTime {
		return
	}
	l.lastSweep = now
	for k, c := range l.clients {
		if l.clientExpired(c, now) {
			delete(l.clients, k)
		}
	}
	for k, a := range l.accounts {
		if now.Sub(a.last) >= l.opts.BlockTime {
			delete(l.accounts, k)
		}
	}
	l.sweepAt = max(sweepMin, 2*(len(l.clients)+len(l.accounts)))
}

// BlockTime is the configured block time, for reply texts.
func (l *Logins) BlockTime() time.Duration { return l.opts.BlockTime }
