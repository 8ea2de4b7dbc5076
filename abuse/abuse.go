// Package abuse owns pochta's limits on abusive clients, shared by smtpd and
// imapd so that one client is judged the same on every port:
//
//   - Logins throttles failed logins (SMTP AUTH, IMAP LOGIN and
//     AUTHENTICATE alike) per client address and per account.
//   - Connections bounds open connections per client address and in total,
//     and keeps connections that have not logged in to half of the total
//     by evicting the oldest of the address holding the most; with a
//     login timeout it also ends those not logged in within it.
//   - Ending makes a server's decision to end a connection (a read
//     timeout, an eviction) final below the protocol libraries, which sit
//     on top of TLS and would otherwise read on under a fresh deadline.
//   - Bucket is the per-session command rate (a token bucket).
//
// What it promises:
//   - An address that keeps failing is answered ever more slowly, then
//     refused outright for a while; refused attempts never reach the password
//     check, so a blocked guesser learns nothing.
//   - An account under attack (many failures from any addresses) has its
//     password checks paced: at most one per AccountCheckInterval from the
//     addresses that have failed on it, and one per interval from those
//     that have not, however many connections and addresses guess in
//     parallel; an attempt whose turn is more than MaxDelay away is
//     answered with a temporary failure, unchecked. The two schedules are
//     apart, so guessers who keep failing never take the turns of an owner
//     logging in from a clean address; and an owner whose login is cached
//     (package auth) is not checked at all. No wait before a check and
//     after its failure exceeds MaxDelay in total.
//   - Memory is bounded by what happened within the block time: entries
//     older than that are swept as the tables grow.
//   - IPv6 clients are counted per /64, the block one host usually owns, so
//     rotating through its own addresses does not reset the counts.
//   - Every type is safe for concurrent use, except Bucket, which belongs to
//     one session. The clock is injectable for tests.
//
// The package only decides; the servers sleep, answer and count, because the
// replies and metrics are protocol-specific.
package abuse

import (
	"net/netip"
	"strings"
	"time"
)

// Clock returns the current time; nil means time.Now.
type Clock func() time.Time

func (c Clock) now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}

// sweepMin is the table size below which expired entries are left alone:
// sweeping a small map on every insert would cost more than it saves.
const sweepMin = 1024

// clientKey is what a client is counted by: the IPv4 address, or the /64 of
// an IPv6 address. The zero Addr (a non-IP transport) is one client.
func clientKey(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// maxAccountKey bounds the account names kept: an address is at most 254
// octets (RFC 5321 4.5.3.1.3), so longer input is no real account and need
// not be stored whole.
const maxAccountKey = 320

// accountKey is how an account name is counted: trimmed and lower-case,
// the way the servers look users up.
func accountKey(account string) string {
	account = strings.ToLower(strings.TrimSpace(account))
	if len(account) > maxAccountKey {
		account = account[:maxAccountKey]
	}
	return account
}
