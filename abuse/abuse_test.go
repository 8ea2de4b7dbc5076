package abuse

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var (
	attacker = netip.MustParseAddr("192.0.2.66")
	office   = netip.MustParseAddr("198.51.100.7")
)

func newTestLogins(clock *fakeClock) *Logins {
	return NewLogins(LoginOptions{
		FailuresPerAddress: 10,
		FailuresPerAccount: 20,
		BlockTime:          15 * time.Minute,
		BaseDelay:          500 * time.Millisecond,
		MaxDelay:           5 * time.Second,
		Now:                clock.Now,
	})
}

func TestFailuresAreSlowedProgressivelyThenRefused(t *testing.T) {
	clock := newFakeClock()
	l := newTestLogins(clock)
	want := []time.Duration{0, 0, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		5 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if v := l.Check(attacker, "alice@example.com"); v != (Verdict{}) {
			t.Fatalf("attempt %d: verdict %+v before the limit", i+1, v)
		}
		delay, blocked := l.Failed(attacker, "alice@example.com", 0)
		if delay != w {
			t.Errorf("failure %d: delay %v, want %v", i+1, delay, w)
		}
		if blocked != (i+1 == 10) {
			t.Errorf("failure %d: blocked = %v", i+1, blocked)
		}
	}
	v := l.Check(attacker, "alice@example.com")
	if !v.Refused || !v.Until.Equal(clock.Now().Add(15*time.Minute)) {
		t.Fatalf("11th attempt: %+v, want refused for 15 minutes", v)
	}
	// Another account from the same address is refused too: the address
	// is blocked, not the pair.
	if v := l.Check(attacker, "bob@example.com"); !v.Refused {
		t.Errorf("other account from a blocked address: %+v, want refused", v)
	}
	if v := l.Check(office, "alice@example.com"); v != (Verdict{}) {
		t.Errorf("another address: %+v, want no throttling", v)
	}
	clock.advance(15*time.Minute - time.Second)
	if v := l.Check(attacker, "alice@example.com"); !v.Refused {
		t.Errorf("just before the block ends: %+v, want refused", v)
	}
	clock.advance(time.Second)
	if v := l.Check(attacker, "alice@example.com"); v != (Verdict{}) {
		t.Errorf("after the block: %+v, want a fresh start", v)
	}
	if delay, _ := l.Failed(attacker, "alice@example.com", 0); delay != 0 {
		t.Errorf("first failure after the block: delay %v, want none", delay)
	}
}

func TestSuccessForgetsTheAddressFailures(t *testing.T) {
	clock := newFakeClock()
	l := newTestLogins(clock)
	for range 5 {
		l.Failed(office, "alice@example.com", 0)
	}
	l.Succeeded(office)
	if delay, _ := l.Failed(office, "alice@example.com", 0); delay != 0 {
		t.Errorf("failure after a success: delay %v, want none (count reset)", delay)
	}
}

func TestSuccessDoesNotLiftABlock(t *testing.T) {
	clock := newFakeClock()
	l := newTestLogins(clock)
	for range 10 {
		l.Failed(attacker, "alice@example.com", 0)
	}
	l.Succeeded(attacker)
	if v := l.Check(attacker, "alice@example.com"); !v.Refused {
		t.Errorf("after Succeeded on a blocked address: %+v, want still refused", v)
	}
}

func TestFailuresAreForgottenAfterTheBlockTime(t *testing.T) {
	clock := newFakeClock()
	l := newTestLogins(clock)
	for range 9 {
		l.Failed(attacker, "alice@example.com", 0)
		clock.advance(time.Minute)
	}
	clock.advance(15 * time.Minute)
	if _, blocked := l.Failed(attacker, "alice@example.com", 0); blocked {
		t.Error("a failure 15 minutes after the last one blocked the address; old failures should be forgotten")
	}
}

func TestAttackedAccountSlowsFailingAddressesButNotAFreshOne(t *testing.T) {
	clock := newFakeClock()
	l := newTestLogins(clock)
	// 20 addresses fail once each: no address reaches its own limit.
	var bots []netip.Addr
	for i := range 20 {
		bot := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		bots = append(bots, bot)
		if v := l.Check(bot, "Alice@Example.com "); v != (Verdict{}) {
			t.Fatalf("bot %d before the account limit: %+v", i, v)
		}
		l.Failed(bot, "Alice@Example.com ", 0)
	}
	if v := l.Check(bots[0], "alice@example.com"); v.Refused || v.Delay != 5*time.Second {
		t.Errorf("failing address on the attacked account: %+v, want a 5s delay, not a refusal", v)
	}
	if delay, _ := l.Failed(netip.MustParseAddr("203.0.113.200"), "alice@example.com", 0); delay != 5*time.Second {
		t.Errorf("failure on the attacked account: delay %v, want the maximum", delay)
	}
	// The owner, from an address that has not failed, is not touched.
	if v := l.Check(office, "alice@example.com"); v != (Verdict{}) {
		t.Errorf("owner from a fresh address: %+v, want no throttling", v)
	}
	// Nor are the bots' logins to other accounts.
	if v := l.Check(bots[0], "bob@example.com"); v != (Verdict{}) {
		t.Errorf("failing address on another account: %+v, want no throttling", v)
	}
	clock.advance(15 * time.Minute)
	if v := l.Check(netip.MustParseAddr("203.0.113.200"), "alice@example.com"); v != (Verdict{}) {
		t.Errorf("after the block time: %+v, want the account's failures forgotten", v)
	}
}

func TestIPv6ClientsAreCountedPerSlash64(t *testing.T) {
	clock := newFakeClock()
	l := newTestLogins(clock)
	for i := range 10 {
		l.Failed(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1)), "alice@example.com", 0)
	}
	if v := l.Check(netip.MustParseAddr("2001:db8:1:2:ffff::1"), "alice@example.com"); !v.Refused {
		t.Errorf("same /64: %+v, want refused", v)
	}
	if v := l.Check(netip.MustParseAddr("2001:db8:1:3::1"), "alice@example.com"); v.Refused {
		t.Errorf("next /64: %+v, want not refused", v)
	}
	// IPv4-mapped IPv6 is the IPv4 client.
	for range 10 {
		l.Failed(attacker, "bob@example.com", 0)
	}
	if v := l.Check(netip.AddrFrom16(attacker.As16()), "bob@example.com"); !v.Refused {
		t.Errorf("IPv4-mapped form of a blocked address: %+v, want refused", v)
	}
}

func TestOldRecordsAreSweptAsTheTablesGrow(t *testing.T) {
	clock := newFakeClock()
	l := newTestLogins(clock)
	for i := range 3000 {
		l.Failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), fmt.Sprintf("u%d@example.com", i), 0)
	}
	clock.advance(16 * time.Minute)
	for i := range 10 {
		l.Failed(netip.AddrFrom4([4]byte{172, 16, 0, byte(i)}), "x@example.com", 0)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.clients) + len(l.accounts); n > 100 {
		t.Errorf("%d records kept after every old one expired, want only the recent ones", n)
	}
}

func TestConnectionsPerAddressAndTotal(t *testing.T) {
	c := NewConnections(2, 3)
	r1, why := c.Open(attacker)
	r2, _ := c.Open(attacker)
	if r1 == nil || r2 == nil || why != "" {
		t.Fatal("first two connections from one address refused")
	}
	if r, why := c.Open(attacker); r != nil || why != RefusedPerAddress {
		t.Fatalf("third from one address: refused %q, want %q", why, RefusedPerAddress)
	}
	r3, _ := c.Open(office)
	if r3 == nil {
		t.Fatal("connection from another address refused below the total")
	}
	if r, why := c.Open(netip.MustParseAddr("203.0.113.1")); r != nil || why != RefusedTotal {
		t.Fatalf("fourth in total: refused %q, want %q", why, RefusedTotal)
	}
	r1()
	r1() // a second release must not free another slot
	if got := c.Count(); got != 2 {
		t.Fatalf("Count after one release (twice) = %d, want 2", got)
	}
	if r, _ := c.Open(attacker); r == nil {
		t.Error("a slot freed by release was not reused")
	}
	if r, why := c.Open(office); r != nil || why != RefusedTotal {
		t.Errorf("over the total again: %q", why)
	}
}

func TestNilConnectionsAdmitsEveryone(t *testing.T) {
	var c *Connections
	for range 3 {
		release, why := c.Open(attacker)
		if release == nil || why != "" {
			t.Fatal("nil limiter refused a connection")
		}
		release()
	}
}

func TestBucketAllowsBurstThenPacesToTheRate(t *testing.T) {
	clock := newFakeClock()
	b := NewBucket(Rate{PerSecond: 10, Burst: 5}, clock.Now)
	for i := range 5 {
		if d := b.Take(1); d != 0 {
			t.Fatalf("command %d within the burst: wait %v", i+1, d)
		}
	}
	if d := b.Take(1); d != 100*time.Millisecond {
		t.Fatalf("first command over the burst: wait %v, want 100ms", d)
	}
	clock.advance(100 * time.Millisecond) // the caller waited as told
	if d := b.Take(1); d != 100*time.Millisecond {
		t.Fatalf("next command right after waiting: wait %v, want 100ms", d)
	}
	clock.advance(time.Hour)
	for i := range 5 {
		if d := b.Take(1); d != 0 {
			t.Fatalf("after a long pause, command %d: wait %v; the bucket should be full again (and no fuller)", i+1, d)
		}
	}
	if d := b.Take(0.5); d != 50*time.Millisecond {
		t.Errorf("half a token over: wait %v, want 50ms", d)
	}
}

func TestZeroRateHasNoBucket(t *testing.T) {
	b := NewBucket(Rate{}, nil)
	if b != nil {
		t.Fatal("NewBucket(zero Rate) made a bucket")
	}
	if d := b.Take(1000); d != 0 {
		t.Errorf("nil bucket asked to wait %v", d)
	}
	if b := NewBucket(Rate{PerSecond: 0.5}, nil); b.burst != 1 {
		t.Errorf("default burst for 0.5/s = %v, want 1", b.burst)
	}
}

func TestPreLoginHalfEvictsTheOldestOfTheBiggestHolder(t *testing.T) {
	c := NewConnections(0, 6) // pre-login half: 3
	var evicted []string
	admit := func(addr netip.Addr, name string) *Slot {
		s, why := c.Admit(addr, func(string) { evicted = append(evicted, name) })
		if s == nil {
			t.Fatalf("%s refused (%s); strangers are evicted, not refused", name, why)
		}
		return s
	}
	user := admit(office, "user")
	user.LoggedIn()
	admit(attacker, "a1")
	admit(attacker, "a2")
	admit(netip.MustParseAddr("203.0.113.9"), "b1")
	// The half is full: a newcomer evicts the attacker's oldest.
	admit(netip.MustParseAddr("203.0.113.10"), "c1")
	if len(evicted) != 1 || evicted[0] != "a1" {
		t.Fatalf("evicted %v, want [a1]", evicted)
	}
	if n := c.PreLogin(); n != 3 {
		t.Errorf("%d pre-login connections, want the half (3)", n)
	}
	// Logged-in sessions fill the rest; the user's is never evicted.
	for i := range 2 {
		admit(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), "u").LoggedIn()
	}
	for i := range 10 {
		admit(netip.AddrFrom4([4]byte{198, 19, 0, byte(i)}), "stranger")
	}
	for _, e := range evicted {
		if e == "user" || e == "u" {
			t.Fatalf("a logged-in session was evicted: %v", evicted)
		}
	}
	if n := c.Count(); n != 6 {
		t.Errorf("%d connections counted, want the total 6", n)
	}
	// With every slot logged in, a newcomer is refused.
	for range 3 {
		c.preLoginLoggedInForTest()
	}
	if s, why := c.Admit(attacker, func(string) {}); s != nil || why != RefusedTotal {
		t.Errorf("newcomer with every slot logged in: %v %q, want refused (total)", s, why)
	}
	user.Release()
	if s, _ := c.Admit(attacker, func(string) {}); s == nil {
		t.Error("a released slot was not given back")
	}
}

// preLoginLoggedInForTest logs in the oldest pre-login connection.
func (c *Connections) preLoginLoggedInForTest() {
	c.mu.Lock()
	s := c.oldestStranger()
	c.mu.Unlock()
	s.LoggedIn()
}

func TestThrottleWaitsStayWithinFiveSeconds(t *testing.T) {
	logins := NewLogins(LoginOptions{FailuresPerAddress: 100, FailuresPerAccount: 1})
	logins.Failed(attacker, "alice@example.com", 0)
	v := logins.Check(attacker, "alice@example.com")
	if v.Delay != 5*time.Second {
		t.Fatalf("failing address on an attacked account: delay %v, want 5s", v.Delay)
	}
	if after, _ := logins.Failed(attacker, "alice@example.com", v.Delay); v.Delay+after > 5*time.Second {
		t.Errorf("wait before the check %v plus after its failure %v exceed the documented 5 s", v.Delay, after)
	}
}
