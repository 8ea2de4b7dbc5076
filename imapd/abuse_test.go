package imapd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pochta/pochta/abuse"
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

// withOptions changes the test server's options.
func withOptions(f func(*Options)) envOption { return f }

// dialFrom connects to addr from the loopback address local ("" for the
// default), skipping the test where the system has only 127.0.0.1.
func dialFrom(t testing.TB, local, addr string) net.Conn {
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

// rawOn wraps a connection and returns it with the server's first line.
func rawOn(t testing.TB, c net.Conn) (*rawConn, string) {
	t.Helper()
	r := &rawConn{t: t, conn: c, r: bufio.NewReader(c)}
	line, err := r.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the greeting: %v", err)
	}
	return r, line
}

// greetedFrom connects from local to the plain port and requires "* OK".
func (e *testEnv) greetedFrom(local string) *rawConn {
	e.t.Helper()
	r, line := rawOn(e.t, dialFrom(e.t, local, e.addr))
	if !strings.HasPrefix(line, "* OK") {
		e.t.Fatalf("greeting from %q: %q", local, line)
	}
	return r
}

// reply sends a tagged command and returns its tagged response line.
func (c *rawConn) reply(cmd string) string {
	c.t.Helper()
	c.send(cmd)
	tag := strings.Fields(cmd)[0] + " "
	return c.expect(tag)
}

// wantClosed checks that the server hangs up (reading gives EOF, not a
// timeout).
func (c *rawConn) wantClosed() {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err == nil {
			if strings.HasPrefix(line, "* BYE") {
				continue
			}
			c.t.Fatalf("connection still open; read %q", line)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("connection still open after waiting")
		}
		return
	}
}

func TestEleventhFailedLoginIsRefusedWhileAnotherAddressLogsIn(t *testing.T) {
	clock := &testClock{now: time.Now()}
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.Logins = abuse.NewLogins(abuse.LoginOptions{
			FailuresPerAddress: 10, FailuresPerAccount: 100, BlockTime: 15 * time.Minute,
			BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond, Now: clock.Now,
		})
	}))
	// A connection is dropped after 5 failures, so the guesser reconnects.
	for i := range 10 {
		c := e.greetedFrom("")
		if line := c.reply(fmt.Sprintf("a%d LOGIN %s wrong", i, alice)); !strings.HasPrefix(line, fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED]", i)) {
			t.Fatalf("failure %d: %q", i+1, line)
		}
	}
	c := e.greetedFrom("")
	line := c.reply(fmt.Sprintf(`b LOGIN %s "%s"`, alice, password))
	if !strings.HasPrefix(line, "b NO [UNAVAILABLE] Too many failed logins from 127.0.0.1") {
		t.Fatalf("11th attempt, right password: %q, want NO [UNAVAILABLE]", line)
	}
	// AUTHENTICATE is refused the same way.
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + password))
	if line := c.reply("c AUTHENTICATE PLAIN " + plain); !strings.HasPrefix(line, "c NO [UNAVAILABLE]") {
		t.Fatalf("AUTHENTICATE from the blocked address: %q", line)
	}

	owner := e.greetedFrom(otherClient)
	if line := owner.reply(fmt.Sprintf(`d LOGIN %s "%s"`, alice, password)); !strings.HasPrefix(line, "d OK") {
		t.Fatalf("right password from %s: %q", otherClient, line)
	}
	if n := e.metrics.throttled.Load(); n < 2 {
		t.Errorf("throttled logins counted %d, want the slowed failures and the refusals", n)
	}

	clock.advance(15 * time.Minute)
	later := e.greetedFrom("")
	if line := later.reply(fmt.Sprintf(`e LOGIN %s "%s"`, alice, password)); !strings.HasPrefix(line, "e OK") {
		t.Fatalf("after the block time: %q", line)
	}
}

func TestAttackedAccountDoesNotBlockAFreshAddressWithTheRightPassword(t *testing.T) {
	clock := &testClock{now: time.Now()}
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.Logins = abuse.NewLogins(abuse.LoginOptions{
			FailuresPerAddress: 100, FailuresPerAccount: 3, BlockTime: 15 * time.Minute,
			BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond, Now: clock.Now,
		})
	}))
	attacker := e.greetedFrom("")
	for i := range 3 {
		if line := attacker.reply(fmt.Sprintf("a%d LOGIN %s wrong", i, alice)); !strings.Contains(line, "NO") {
			t.Fatalf("guess %d: %q", i, line)
		}
	}
	before := e.metrics.throttled.Load()
	owner := e.greetedFrom(otherClient)
	if line := owner.reply(fmt.Sprintf(`b LOGIN %s "%s"`, alice, password)); !strings.HasPrefix(line, "b OK") {
		t.Fatalf("owner from a fresh address: %q", line)
	}
	if after := e.metrics.throttled.Load(); after != before {
		t.Errorf("the owner's login from a fresh address was throttled (%d -> %d)", before, after)
	}
}

func TestConnectionsOverTheLimitsGetBye(t *testing.T) {
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.Connections = abuse.NewConnections(2, 3)
	}))
	// Logged-in sessions fill the total (pre-login strangers would be
	// evicted instead, TestStrangersCannotLockOutAUser).
	first := e.greetedFrom("")
	first.ok(fmt.Sprintf(`a LOGIN %s "%s"`, alice, password))
	e.greetedFrom("").ok(fmt.Sprintf(`a LOGIN %s "%s"`, alice, password))
	r, line := rawOn(t, dialFrom(t, "", e.addr))
	if !strings.HasPrefix(line, "* BYE [UNAVAILABLE] Too many connections (from your address)") {
		t.Fatalf("third connection from one address: %q, want * BYE", line)
	}
	r.wantClosed()

	e.greetedFrom(otherClient).ok(fmt.Sprintf(`a LOGIN %s "%s"`, alice, password))
	// Over the total, on the implicit-TLS port the BYE follows the handshake.
	tc := tls.Client(dialFrom(t, otherClient, e.tlsAddr), e.clientTLS)
	if _, line := rawOn(t, tc); !strings.HasPrefix(line, "* BYE [UNAVAILABLE] Too many connections (in total)") {
		t.Fatalf("connection over the total on the TLS port: %q, want * BYE", line)
	}

	first.conn.Close()
	deadline := time.Now().Add(waitLimit)
	for {
		_, line := rawOn(t, dialFrom(t, "", e.addr))
		if strings.HasPrefix(line, "* OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection was never given back")
		}
	}
	refused := e.metrics.refusals()
	if refused[abuse.RefusedPerAddress] < 1 || refused[abuse.RefusedTotal] < 1 {
		t.Errorf("refusals counted %v, want per_address and total", refused)
	}
}

func TestIdleClientIsDisconnectedButIDLEClientIsNot(t *testing.T) {
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.IdleTimeout = 300 * time.Millisecond
		o.IDLETimeout = time.Minute
	}))
	idler := e.greetedFrom("")
	idler.ok(fmt.Sprintf(`a LOGIN %s "%s"`, alice, password))
	idler.ok("b SELECT INBOX")
	idler.send("c IDLE")
	idler.expect("+ ")

	// Logged in after IDLE began, silent from then on.
	silent := e.greetedFrom("")
	silent.ok(fmt.Sprintf(`a LOGIN %s "%s"`, bob, password))
	silent.wantClosed()

	// The IDLE client has been quiet longer than the idle timeout and is
	// still served.
	idler.send("DONE")
	idler.expect("c OK")
	idler.ok("d NOOP")
}

func TestIDLEEndsAfterItsOwnTimeout(t *testing.T) {
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.IdleTimeout = time.Minute
		o.IDLETimeout = 300 * time.Millisecond
	}))
	c := e.greetedFrom("")
	c.ok(fmt.Sprintf(`a LOGIN %s "%s"`, alice, password))
	c.send("b IDLE")
	c.expect("+ ")
	c.wantClosed()
}

func TestCommandRateSlowsCommandsButNeverFailsThem(t *testing.T) {
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.CommandRate = abuse.Rate{PerSecond: 40, Burst: 4}
	}))
	c := e.greetedFrom("")
	start := time.Now()
	c.ok(fmt.Sprintf(`a LOGIN %s "%s"`, alice, password))
	for i := range 24 {
		c.ok(fmt.Sprintf("n%d NOOP", i))
	}
	// 25 commands against a burst of 4: about 21 had to wait 1/40 s each.
	if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
		t.Errorf("25 commands took %v at 40 per second; they were not slowed", elapsed)
	}
	if n := e.metrics.delayed.Load(); n < 15 {
		t.Errorf("delayed commands counted %d, want about 42 (two deadlines per command)", n)
	}
}

func TestTLSBelow12IsRefusedOnBothIMAPPorts(t *testing.T) {
	certs, err := tlsconf.Load("", "", t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, withOptions(func(o *Options) { o.TLSConfig = certs.TLSConfig() }))
	old := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	modern := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}

	if err := tls.Client(dialFrom(t, "", e.tlsAddr), old).Handshake(); err == nil {
		t.Error("the implicit-TLS port accepted a TLS 1.1 handshake")
	}
	c := e.greetedFrom("")
	c.ok("a STARTTLS")
	if err := tls.Client(c.conn, old).Handshake(); err == nil {
		t.Error("STARTTLS accepted a TLS 1.1 handshake")
	}
	// The same ports take TLS 1.2 and later.
	if err := tls.Client(dialFrom(t, "", e.tlsAddr), modern).Handshake(); err != nil {
		t.Errorf("TLS 1.2+ on the implicit-TLS port: %v", err)
	}
	c = e.greetedFrom("")
	c.ok("a STARTTLS")
	if err := tls.Client(c.conn, modern).Handshake(); err != nil {
		t.Errorf("TLS 1.2+ after STARTTLS: %v", err)
	}
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
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Logins = abuse.NewLogins(abuse.LoginOptions{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	}))
	c := e.greetedFrom("")
	c.reply(fmt.Sprintf(`a LOGIN %s "%s"`, alice, wrongPassword))
	c.reply("b AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+wrongPassword)))
	c.reply(fmt.Sprintf(`c LOGIN %s %s"broken`, alice, wrongPassword))
	c.ok(fmt.Sprintf(`d LOGIN %s "%s"`, alice, password))
	msg := testMessage(bob, alice, "logged?", bodyMarker)
	c.send(fmt.Sprintf("e APPEND INBOX {%d+}", len(msg)))
	c.send(string(msg))
	c.expect("e OK")
	c.ok("f SELECT INBOX")
	c.ok("g FETCH 1 BODY[]")
	c.ok("h LOGOUT")

	out := logs.String()
	if !strings.Contains(out, "login failed") || !strings.Contains(out, "logged in") {
		t.Fatalf("the log does not show the session at all:\n%s", out)
	}
	for _, secret := range []string{
		password, wrongPassword, bodyMarker,
		base64.StdEncoding.EncodeToString([]byte(password)),
		base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + wrongPassword)),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains %q:\n%s", secret, out)
		}
	}
}
