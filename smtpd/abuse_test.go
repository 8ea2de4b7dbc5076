package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/tlsconf"
)

// otherClient is a second loopback address, so tests can be two clients.
const otherClient = "127.0.0.2"

// testClock is a clock the tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fastLogins is a login throttle with the production shape and delays of a
// few milliseconds.
func fastLogins(clock *testClock, perAddress, perAccount int) *abuse.Logins {
	return abuse.NewLogins(abuse.LoginOptions{
		FailuresPerAddress: perAddress,
		FailuresPerAccount: perAccount,
		BlockTime:          15 * time.Minute,
		BaseDelay:          time.Millisecond,
		MaxDelay:           4 * time.Millisecond,
		Now:                clock.Now,
	})
}

// dialFrom connects to addr from the loopback address local ("" for the
// default), skipping the test where the system has only 127.0.0.1.
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: waitLimit}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Skipf("cannot connect from %s on this system: %v", local, err)
	}
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, local, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	return c
}

// rawFrom connects from local and returns the connection with its first
// reply (the greeting, or a refusal).
func rawFrom(t *testing.T, local, addr string) (*rawConn, int, string) {
	t.Helper()
	c := dialFrom(t, local, addr)
	r := &rawConn{Conn: c, text: textproto.NewConn(c)}
	code, msg := r.read(t)
	return r, code, msg
}

// greeted connects from local and requires the 220 greeting and EHLO.
func greeted(t *testing.T, local, addr string) *rawConn {
	t.Helper()
	r, code, msg := rawFrom(t, local, addr)
	if code != 220 {
		t.Fatalf("greeting from %q: %d %s", local, code, msg)
	}
	if code, msg := r.cmd(t, "EHLO client.example.test"); code != 250 {
		t.Fatalf("EHLO: %d %s", code, msg)
	}
	return r
}

func authPlain(user, password string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password))
}

// wantClosed checks that the server hangs up (reading gives EOF).
func (r *rawConn) wantClosed(t *testing.T) {
	t.Helper()
	line, err := r.text.ReadLine()
	if err == nil {
		t.Fatalf("connection still open; read %q", line)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open after waiting")
	}
}

func TestEleventhFailedLoginFromAnAddressIsRefusedWhileAnotherAddressLogsIn(t *testing.T) {
	clock := &testClock{now: time.Now()}
	m := newCountingMetrics()
	env := startServer(t, func(o *Options) {
		o.AllowInsecureAuth = true
		o.Logins = fastLogins(clock, 10, 100)
		o.Metrics = m
	})

	guesser := greeted(t, "", env.submission)
	for i := range 10 {
		if code, msg := guesser.cmd(t, authPlain(alice, "guess")); code != 535 {
			t.Fatalf("failure %d: %d %s, want 535", i+1, code, msg)
		}
	}
	// The 11th attempt is refused even with the right password, and the
	// connection is closed.
	code, msg := guesser.cmd(t, authPlain(alice, testPassword))
	if code != 421 || !strings.HasPrefix(msg, "4.7.0 Too many failed logins from 127.0.0.1") {
		t.Fatalf("11th attempt: %d %q, want 421 4.7.0 too many failed logins", code, msg)
	}
	guesser.wantClosed(t)

	// Another address, with the right password, is not affected.
	owner := greeted(t, otherClient, env.submission)
	if code, msg := owner.cmd(t, authPlain(alice, testPassword)); code != 235 {
		t.Fatalf("right password from %s: %d %s, want 235", otherClient, code, msg)
	}
	// The blocked address stays refused on a new connection...
	again := greeted(t, "", env.submission)
	if code, _ := again.cmd(t, authPlain(bob, testPassword)); code != 421 {
		t.Fatalf("blocked address on a new connection: %d, want 421", code)
	}
	// ...until the block time has passed.
	clock.advance(15 * time.Minute)
	later := greeted(t, "", env.submission)
	if code, msg := later.cmd(t, authPlain(alice, testPassword)); code != 235 {
		t.Fatalf("after the block time: %d %s, want 235", code, msg)
	}
	if _, throttled, _ := m.snapshot(); throttled < 2 {
		t.Errorf("throttled logins counted %d, want the slowed failures and the refusals", throttled)
	}
}

func TestAttackedAccountStillLetsItsOwnerInFromACleanAddress(t *testing.T) {
	clock := &testClock{now: time.Now()}
	m := newCountingMetrics()
	env := startServer(t, func(o *Options) {
		o.AllowInsecureAuth = true
		o.Logins = fastLogins(clock, 100, 3)
		o.Metrics = m
	})
	attacker := greeted(t, "", env.submission)
	for range 3 {
		if code, _ := attacker.cmd(t, authPlain(alice, "guess")); code != 535 {
			t.Fatalf("guess: %d, want 535", code)
		}
	}
	_, before, _ := m.snapshot()
	owner := greeted(t, otherClient, env.submission)
	if code, msg := owner.cmd(t, authPlain(alice, testPassword)); code != 235 {
		t.Fatalf("owner from a clean address: %d %s, want 235", code, msg)
	}
	if _, after, _ := m.snapshot(); after != before {
		t.Errorf("the owner's login from a clean address was throttled (%d -> %d)", before, after)
	}
	// The failing address is slowed on that account, not refused; with a
	// password the owner has not just used (the login cache would answer
	// that one at once, as it is right).
	if code, msg := attacker.cmd(t, authPlain(alice, "guess again")); code != 535 {
		t.Fatalf("another guess from the failing address: %d %s, want 535 (slowed, not refused)", code, msg)
	}
	if _, after, _ := m.snapshot(); after != before+1 {
		t.Errorf("throttled %d -> %d, want the failing address's login counted as slowed", before, after)
	}
}

func TestConnectionsOverTheLimitsGet421(t *testing.T) {
	m := newCountingMetrics()
	env := startServer(t, func(o *Options) {
		o.Connections = abuse.NewConnections(2, 3)
		o.Metrics = m
		o.AllowInsecureAuth = true
	})
	// Logged-in sessions fill the total (pre-login strangers would be
	// evicted instead, TestStrangersCannotLockOutAUser).
	first := greeted(t, "", env.submission)
	if code, msg := first.cmd(t, authPlain(alice, testPassword)); code != 235 {
		t.Fatalf("AUTH: %d %s", code, msg)
	}
	greeted(t, "", env.inbound)
	// A third from 127.0.0.1 is over the per-address limit, on any port.
	r, code, msg := rawFrom(t, "", env.submission)
	if code != 421 || !strings.Contains(msg, "too many connections (from your address)") {
		t.Fatalf("third connection from one address: %d %q, want 421 too many connections", code, msg)
	}
	r.wantClosed(t)
	// Another address gets the last slot of the total...
	other := greeted(t, otherClient, env.submission)
	if code, msg := other.cmd(t, authPlain(alice, testPassword)); code != 235 {
		t.Fatalf("AUTH: %d %s", code, msg)
	}
	// ...and then the total is reached for everyone, the implicit-TLS port
	// too, where the reply comes after the handshake.
	c := dialFrom(t, otherClient, env.submissions)
	tc := tls.Client(c, env.clientTLS)
	tr := &rawConn{Conn: tc, text: textproto.NewConn(tc)}
	if code, msg := tr.read(t); code != 421 || !strings.Contains(msg, "too many connections (in total)") {
		t.Fatalf("connection over the total on submissions: %d %q, want 421", code, msg)
	}

	// Closing a connection frees its slot.
	first.Close()
	deadline := time.Now().Add(waitLimit)
	for {
		r, code, _ := rawFrom(t, "", env.submission)
		r.Close()
		if code == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection was never given back")
		}
	}
	refused, _, _ := m.snapshot()
	if refused[abuse.RefusedPerAddress] < 1 || refused[abuse.RefusedTotal] < 1 {
		t.Errorf("refusals counted %v, want per_address and total", refused)
	}
}

func TestCommandRateSlowsCommandsButNeverFailsThem(t *testing.T) {
	m := newCountingMetrics()
	env := startServer(t, func(o *Options) {
		o.CommandRate = abuse.Rate{PerSecond: 40, Burst: 4}
		o.Metrics = m
	})
	// The trusted inbound port is not paced. It goes first: a paced
	// connection counts a delay for every wait for a command, even the one
	// after its QUIT, so none may be open while inbound is counted.
	in := greeted(t, "", env.inbound)
	for range 24 {
		if code, msg := in.cmd(t, "NOOP"); code != 250 {
			t.Fatalf("inbound NOOP: %d %s", code, msg)
		}
	}
	if _, _, delayed := m.snapshot(); delayed != 0 {
		t.Errorf("%d inbound commands were delayed; the inbound port is not paced", delayed)
	}

	r := greeted(t, "", env.submission)
	start := time.Now()
	for i := range 24 {
		if code, msg := r.cmd(t, "NOOP"); code != 250 {
			t.Fatalf("NOOP %d: %d %s, want 250", i+1, code, msg)
		}
	}
	// EHLO and 24 NOOPs against a burst of 4: about 21 commands had to
	// wait 1/40 s each.
	if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
		t.Errorf("24 commands took %v at 40 per second; they were not slowed", elapsed)
	}
	if _, _, delayed := m.snapshot(); delayed < 15 {
		t.Errorf("delayed commands counted %d, want about 21", delayed)
	}
}

func TestSilentClientGets421AfterTheIdleTimeout(t *testing.T) {
	env := startServer(t, func(o *Options) { o.ReadTimeout = 200 * time.Millisecond })
	r := greeted(t, "", env.submission)
	code, msg := r.read(t)
	if code != 421 {
		t.Fatalf("after the idle timeout: %d %s, want 421", code, msg)
	}
	r.wantClosed(t)
}

func TestSubmissionNeverRelaysForAnUnauthenticatedClient(t *testing.T) {
	env := startServer(t, func(o *Options) { o.AllowInsecureAuth = true })
	ports := map[string]func() *rawConn{
		"submission (plain, insecure auth allowed)": func() *rawConn { return greeted(t, "", env.submission) },
		"submission after STARTTLS": func() *rawConn {
			r := greeted(t, "", env.submission)
			if code, msg := r.cmd(t, "STARTTLS"); code != 220 {
				t.Fatalf("STARTTLS: %d %s", code, msg)
			}
			tc := tls.Client(r.Conn, env.clientTLS)
			r = &rawConn{Conn: tc, text: textproto.NewConn(tc)}
			if code, msg := r.cmd(t, "EHLO client.example.test"); code != 250 {
				t.Fatalf("EHLO after STARTTLS: %d %s", code, msg)
			}
			return r
		},
		"submissions": func() *rawConn {
			c := dialFrom(t, "", env.submissions)
			tc := tls.Client(c, env.clientTLS)
			r := &rawConn{Conn: tc, text: textproto.NewConn(tc)}
			if code, msg := r.read(t); code != 220 {
				t.Fatalf("greeting: %d %s", code, msg)
			}
			if code, msg := r.cmd(t, "EHLO client.example.test"); code != 250 {
				t.Fatalf("EHLO: %d %s", code, msg)
			}
			return r
		},
	}
	for name, connect := range ports {
		t.Run(name, func(t *testing.T) {
			r := connect()
			for _, from := range []string{alice, "someone@elsewhere.test", ""} {
				if code, msg := r.cmd(t, "MAIL FROM:<"+from+">"); code != 530 {
					t.Fatalf("MAIL FROM:<%s> without AUTH: %d %s, want 530", from, code, msg)
				}
			}
			if code, _ := r.cmd(t, "RCPT TO:<victim@elsewhere.test>"); code/100 == 2 {
				t.Fatalf("RCPT without AUTH accepted: %d", code)
			}
			if code, _ := r.cmd(t, "DATA"); code == 354 {
				t.Fatal("DATA without AUTH accepted")
			}
		})
	}
	entries, err := env.store.QueueEntries(context.Background(), storage.QueueFilter{})
	if err != nil || len(entries) != 0 {
		t.Fatalf("queue %v (%v), want empty", entries, err)
	}
}

func TestInboundRelaysOnlyForTrustedNetworks(t *testing.T) {
	env := startServer(t, func(o *Options) {
		o.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	// 127.0.0.2 is on the same host but not in trusted_networks.
	r, code, msg := rawFrom(t, otherClient, env.inbound)
	if code != 554 || !strings.Contains(msg, "not a trusted network") {
		t.Fatalf("untrusted peer: %d %q, want 554 at connect", code, msg)
	}
	r.wantClosed(t)
	entries, err := env.store.QueueEntries(context.Background(), storage.QueueFilter{})
	if err != nil || len(entries) != 0 {
		t.Fatalf("queue %v (%v), want empty", entries, err)
	}
	// The trusted peer may relay.
	trusted := greeted(t, "", env.inbound)
	if code, msg := trusted.cmd(t, "MAIL FROM:<>"); code != 250 {
		t.Fatalf("trusted MAIL: %d %s", code, msg)
	}
	if code, msg := trusted.cmd(t, "RCPT TO:<someone@elsewhere.test>"); code != 250 {
		t.Fatalf("trusted RCPT to another domain: %d %s, want 250 (queued)", code, msg)
	}
}

func TestTLSBelow12IsRefusedOnBothSubmissionPorts(t *testing.T) {
	certs, err := tlsconf.Load("", "", t.TempDir(), testHostname)
	if err != nil {
		t.Fatal(err)
	}
	env := startServer(t, func(o *Options) { o.TLSConfig = certs.TLSConfig() })
	old := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	modern := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}

	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLimit}, "tcp", env.submissions, old); err == nil {
		c.Close()
		t.Error("submissions accepted a TLS 1.1 handshake")
	}
	r := greeted(t, "", env.submission)
	if code, msg := r.cmd(t, "STARTTLS"); code != 220 {
		t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	if err := tls.Client(r.Conn, old).Handshake(); err == nil {
		t.Error("submission accepted STARTTLS with TLS 1.1")
	}
	// The same listeners take TLS 1.2 and later.
	c, err := smtp.DialTLS(env.submissions, modern)
	if err != nil {
		t.Fatalf("TLS 1.2+ on submissions: %v", err)
	}
	c.Close()
	c, err = smtp.DialStartTLS(env.submission, modern)
	if err != nil {
		t.Fatalf("TLS 1.2+ STARTTLS on submission: %v", err)
	}
	c.Close()
}

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLogsNeverContainPasswordsOrBodies(t *testing.T) {
	var logs lockedBuffer
	const (
		wrongPassword = "Tr0ub4dor&3-wrong"
		bodyMarker    = "BODY-SECRET-7f3a9c"
	)
	env := startServer(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Logins = fastLogins(&testClock{now: time.Now()}, 10, 20)
	})
	bad := env.dialStartTLS(t)
	if err := bad.Auth(sasl.NewPlainClient("", alice, wrongPassword)); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := bad.Auth(sasl.NewLoginClient(alice, wrongPassword)); err == nil {
		t.Fatal("wrong password accepted over AUTH LOGIN")
	}
	c := env.login(t, alice)
	msg := "From: " + alice + "\r\nTo: " + bob + "\r\nSubject: logged?\r\n\r\n" + bodyMarker + "\r\n"
	if err := send(c, alice, []string{bob, "someone@elsewhere.test"}, msg); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	// A message refused for its size is not logged either.
	c2 := env.login(t, bob)
	big := msg + strings.Repeat(bodyMarker+"\r\n", testMaxSize/len(bodyMarker))
	if err := send(c2, bob, []string{alice}, big); err == nil {
		t.Fatal("oversized message accepted")
	}
	c2.Quit()

	out := logs.String()
	if !strings.Contains(out, "smtp transaction") || !strings.Contains(out, "smtp auth failed") {
		t.Fatalf("the log does not show the session at all:\n%s", out)
	}
	for _, secret := range []string{
		testPassword, wrongPassword, bodyMarker,
		base64.StdEncoding.EncodeToString([]byte(testPassword)),
		base64.StdEncoding.EncodeToString([]byte(wrongPassword)),
		base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + testPassword)),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains %q:\n%s", secret, out)
		}
	}
}
