package auth

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// cacheKey is HMAC-SHA256(address NUL password) under the process's key.
type cacheKey [sha256.Size]byte

// cache holds successful logins; see the package comment. A nil *cache
// (CacheSize < 0) caches nothing.
type cache struct {
	secret []byte
	size   int
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	gen     uint64 // bumped by forget
	entries map[cacheKey]*list.Element
	lru     *list.List // of *cacheEntry, most recently used first
}

type cacheEntry struct {
	key     cacheKey
	address string
	expires time.Time
}

func newCache(size int, ttl time.Duration, now func() time.Time) *cache {
	secret := make([]byte, 32)
	rand.Read(secret) // never fails (crypto/rand, Go 1.24)
	c := &cache{secret: secret, size: size, ttl: ttl, now: now,
		entries: make(map[cacheKey]*list.Element), lru: list.New()}
	if size < 0 {
		c.size = 0
	}
	return c
}

func (c *cache) key(address, password string) cacheKey {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte(address))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k cacheKey
	m.Sum(k[:0])
	return k
}

// get returns the cached address for k, if any and still fresh.
func (c *cache) get(k cacheKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.entries[k]
	if el == nil {
		return "", false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, k)
		return "", false
	}
	c.lru.MoveToFront(el)
	return e.address, true
}

// generation is the value to pass to put for a check starting now.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches a successful login, unless forget ran since gen was taken.
func (c *cache) put(k cacheKey, address string, gen uint64) {
	if c.size == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	expires := c.now().Add(c.ttl)
	if el := c.entries[k]; el != nil {
		el.Value.(*cacheEntry).expires = expires
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.size {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).key)
	}
	c.entries[k] = c.lru.PushFront(&cacheEntry{key: k, address: address, expires: expires})
}

// forget drops address's entries ("": every entry). It walks the whole
// cache: it runs only when a password changes or a user goes, and the
// cache is bounded.
func (c *cache) forget(address string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, el := range c.entries {
		if address == "" || el.Value.(*cacheEntry).address == address {
			c.lru.Remove(el)
			delete(c.entries, k)
		}
	}
}

// len returns the number of entries (for tests).
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
