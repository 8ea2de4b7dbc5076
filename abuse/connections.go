package abuse

import (
	"net/netip"
	"sync"
	"time"
)

// Defaults for config's [limits] connection keys.
const (
	DefaultConnectionsPerAddress = 50
	DefaultConnections           = 2000
	// DefaultLoginTimeout is how long a connection may stay without
	// logging in: ample for a TLS handshake and a login by any client,
	// too short to hold a slot with NOOPs.
	DefaultLoginTimeout = time.Minute
)

// Reasons a connection is refused, used as metric labels.
const (
	RefusedPerAddress = "per_address"
	RefusedTotal      = "total"
)

// Connections bounds the connections open at once per client address and
// in total, across every listener that shares it. Create it with
// NewConnections.
//
// Connections admitted with Admit are pre-login until their Slot says
// LoggedIn, and pre-login connections hold at most half of the total.
// When that half is full (or the total is), a new connection is still
// admitted, and the oldest pre-login connection of the address holding the
// most pre-login connections is evicted to make room. The alternative,
// refusing newcomers, lets strangers who hold every pre-login slot lock
// out a user who only needs a few seconds to log in; evicting the oldest
// stranger of the biggest holder means a flood mostly evicts itself, a
// user's one fresh connection is the last to go, and a logged-in session
// is never evicted or refused because strangers are connected.
//
// With a login timeout (SetLoginTimeout), a connection admitted with Admit
// that has not logged in that long after its admission is ended the same
// way, whatever it sends meanwhile: complete NOOPs reset every idle and
// command bound, but not this one.
type Connections struct {
	perAddress, total int
	loginTimeout      time.Duration

	mu       sync.Mutex
	open     map[netip.Prefix]int
	count    int
	preLogin map[netip.Prefix][]*Slot // oldest first
	nPre     int
}

// Slot is one admitted connection's place in Connections.
type Slot struct {
	c        *Connections
	key      netip.Prefix
	evict    func(reason string)
	timer    *time.Timer // the login timeout; nil without one
	preLogin bool        // under c.mu
	gone     bool        // released or evicted; under c.mu
}

// NewConnections returns a limiter allowing perAddress connections from one
// client address and total connections altogether; 0 (or less) means no
// limit of that kind.
func NewConnections(perAddress, total int) *Connections {
	return &Connections{perAddress: perAddress, total: total,
		open: make(map[netip.Prefix]int), preLogin: make(map[netip.Prefix][]*Slot)}
}

// SetLoginTimeout ends connections admitted with Admit that have not
// logged in within d of their admission (see Connections); 0 means no
// such bound. Call it before the first Admit.
func (c *Connections) SetLoginTimeout(d time.Duration) { c.loginTimeout = d }

// Open admits a connection that is never evicted and counts as logged in
// (for callers without a login, and tests). It returns release, which the
// caller calls once when the connection closes (later calls do nothing),
// or, when the connection is over a limit, a nil release and the reason.
// A nil *Connections admits everyone.
func (c *Connections) Open(addr netip.Addr) (release func(), refused string) {
	slot, why := c.admit(addr, nil)
	if slot == nil {
		return nil, why
	}
	return slot.Release, ""
}

// Admit admits a new pre-login connection from addr. evict ends the
// connection (it must not block, and the connection must then close soon);
// it is called at most once, with EndEvicted when a newcomer needs the
// connection's pre-login slot, or with EndLoginTimeout when the login
// timeout passes before LoggedIn. Admit returns the connection's slot, or, over the
// per-address limit or a total held by logged-in sessions, nil and the
// reason (RefusedPerAddress or RefusedTotal). A nil *Connections admits
// everyone (and returns a Slot whose methods do nothing).
func (c *Connections) Admit(addr netip.Addr, evict func(reason string)) (*Slot, string) {
	if evict == nil {
		evict = func(string) {}
	}
	return c.admit(addr, evict)
}

func (c *Connections) admit(addr netip.Addr, evict func(reason string)) (*Slot, string) {
	if c == nil {
		return &Slot{}, ""
	}
	key := clientKey(addr)
	c.mu.Lock()
	// The per-address limit is checked first: when both are reached, the
	// address holding the most is the likelier cause, and saying so helps
	// the operator.
	if c.perAddress > 0 && c.open[key] >= c.perAddress {
		c.mu.Unlock()
		return nil, RefusedPerAddress
	}
	var evicted *Slot
	if c.total > 0 && evict != nil && (c.count >= c.total || c.nPre >= max(1, c.total/2)) {
		evicted = c.oldestStranger()
		if evicted != nil {
			c.removeLocked(evicted)
		}
	}
	if c.total > 0 && c.count >= c.total {
		c.mu.Unlock()
		return nil, RefusedTotal
	}
	slot := &Slot{c: c, key: key, evict: evict}
	c.open[key]++
	c.count++
	if evict != nil {
		slot.preLogin = true
		c.preLogin[key] = append(c.preLogin[key], slot)
		c.nPre++
		if c.loginTimeout > 0 {
			slot.timer = time.AfterFunc(c.loginTimeout, slot.loginTimedOut)
		}
	}
	c.mu.Unlock()
	if evicted != nil {
		evicted.evict(EndEvicted)
	}
	return slot, ""
}

// loginTimedOut ends a connection still not logged in at its login
// timeout, giving its place back at once.
func (s *Slot) loginTimedOut() {
	s.c.mu.Lock()
	if !s.preLogin || s.gone {
		s.c.mu.Unlock()
		return
	}
	s.c.removeLocked(s)
	s.c.mu.Unlock()
	s.evict(EndLoginTimeout)
}

// oldestStranger is the oldest pre-login connection of the address that
// holds the most, or nil. Under c.mu; it looks at every address holding
// pre-login connections, which happens only while they are full.
func (c *Connections) oldestStranger() *Slot {
	var most []*Slot
	for _, slots := range c.preLogin {
		if len(slots) > len(most) {
			most = slots
		}
	}
	if len(most) == 0 {
		return nil
	}
	return most[0]
}

// removeLocked gives s's place back. Under c.mu.
func (c *Connections) removeLocked(s *Slot) {
	if s.gone {
		return
	}
	s.gone = true
	if s.timer != nil {
		s.timer.Stop()
	}
	c.count--
	if c.open[s.key]--; c.open[s.key] <= 0 {
		delete(c.open, s.key)
	}
	if s.preLogin {
		c.dropPreLogin(s)
	}
}

// dropPreLogin takes s off the pre-login list. Under c.mu.
func (c *Connections) dropPreLogin(s *Slot) {
	s.preLogin = false
	c.nPre--
	slots := c.preLogin[s.key]
	for i, x := range slots {
		if x == s {
			slots = append(slots[:i:i], slots[i+1:]...)
			break
		}
	}
	if len(slots) == 0 {
		delete(c.preLogin, s.key)
	} else {
		c.preLogin[s.key] = slots
	}
}

// LoggedIn says the connection's client has logged in: it no longer counts
// against the pre-login half and is never evicted.
func (s *Slot) LoggedIn() {
	if s == nil || s.c == nil {
		return
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.preLogin && !s.gone {
		s.c.dropPreLogin(s)
		if s.timer != nil {
			s.timer.Stop()
		}
	}
}

// Release gives the slot back when the connection closes; later calls (and
// calls after an eviction) do nothing.
func (s *Slot) Release() {
	if s == nil || s.c == nil {
		return
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.removeLocked(s)
}

// Count returns the connections open now (for tests and status pages).
func (c *Connections) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// PreLogin returns the pre-login connections open now (for tests).
func (c *Connections) PreLogin() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nPre
}
