package abuse

import (
	"net/netip"
	"sync"
)

// Defaults for config's [limits] connection keys.
const (
	DefaultConnectionsPerAddress = 50
	DefaultConnections           = 2000
)

// Reasons a connection is refused, used as metric labels.
const (
	RefusedPerAddress = "per_address"
	RefusedTotal      = "total"
)

// Connections bounds the connections open at once per client address and
// in total, across every listener that shares it. Create it with
// NewConnections.
type Connections struct {
	perAddress, total int

	mu    sync.Mutex
	open  map[netip.Prefix]int
	count int
}

// NewConnections returns a limiter allowing perAddress connections from one
// client address and total connections altogether; 0 (or less) means no
// limit of that kind.
func NewConnections(perAddress, total int) *Connections {
	return &Connections{perAddress: perAddress, total: total, open: make(map[netip.Prefix]int)}
}

// Open admits a new connection from addr. It returns release, which the
// caller calls once when the connection closes (later calls do nothing),
// or, when the connection is over a limit, a nil release and the reason
// (RefusedPerAddress or RefusedTotal). A nil *Connections admits everyone.
func (c *Connections) Open(addr netip.Addr) (release func(), refused string) {
	if c == nil {
		return func() {}, ""
	}
	key := clientKey(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	// The per-address limit is checked first: when both are reached, the
	// address holding the most is the likelier cause, and saying so helps
	// the operator.
	if c.perAddress > 0 && c.open[key] >= c.perAddress {
		return nil, RefusedPerAddress
	}
	if c.total > 0 && c.count >= c.total {
		return nil, RefusedTotal
	}
	c.open[key]++
	c.count++
	var once sync.Once
	return func() { once.Do(func() { c.close(key) }) }, ""
}

func (c *Connections) close(key netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count--
	if c.open[key]--; c.open[key] <= 0 {
		delete(c.open, key)
	}
}

// Count returns the connections open now (for tests and status pages).
func (c *Connections) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}
