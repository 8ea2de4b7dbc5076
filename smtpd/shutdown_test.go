package smtpd

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// wantShuttingDown reads the reply a client gets at shutdown and then the
// end of the connection.
func wantShuttingDown(t *testing.T, who string, r *rawConn) {
	t.Helper()
	code, msg, err := r.text.ReadResponse(0)
	if err != nil {
		t.Errorf("%s: no reply at shutdown: %v", who, err)
		return
	}
	if code != 421 || !strings.HasPrefix(msg, "4.3.2 ") || !strings.Contains(msg, "shutting down") {
		t.Errorf("%s got %d %q at shutdown, want 421 4.3.2 ... shutting down", who, code, msg)
	}
	if line, err := r.text.ReadLine(); err != io.EOF {
		t.Errorf("%s: after the shutdown reply got %q, %v; want the connection closed", who, line, err)
	}
}

// startTLS upgrades a raw connection with STARTTLS and says EHLO again.
func startTLS(t *testing.T, r *rawConn, cfg *tls.Config) *rawConn {
	t.Helper()
	if code, msg := r.cmd(t, "STARTTLS"); code != 220 {
		t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	tc := tls.Client(r.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	up := &rawConn{Conn: tc, text: textproto.NewConn(tc)}
	if code, msg := up.cmd(t, "EHLO client.test"); code != 250 {
		t.Fatalf("EHLO after STARTTLS: %d %s", code, msg)
	}
	return up
}

func TestShutdownTellsIdleClientsTheServerIsShuttingDown(t *testing.T) {
	env := startServer(t, nil)
	greeted := dialRaw(t, env.submission, nil)
	helloed := dialRaw(t, env.submission, nil)
	helloed.cmd(t, "EHLO client.test")
	upgraded := dialRaw(t, env.submission, nil)
	upgraded.cmd(t, "EHLO client.test")
	upgraded = startTLS(t, upgraded, env.clientTLS)
	implicit := dialRaw(t, env.submissions, env.clientTLS)
	implicitHelloed := dialRaw(t, env.submissions, env.clientTLS)
	implicitHelloed.cmd(t, "EHLO client.test")
	inbound := dialRaw(t, env.inbound, nil)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for who, r := range map[string]*rawConn{
		"a client just greeted":             greeted,
		"a client after EHLO":               helloed,
		"a client after STARTTLS":           upgraded,
		"an implicit-TLS client greeted":    implicit,
		"an implicit-TLS client after EHLO": implicitHelloed,
		"an inbound client":                 inbound,
	} {
		wantShuttingDown(t, who, r)
	}
}

// gatedListener holds each accepted connection until release is closed,
// and reports when it is closed itself.
type gatedListener struct {
	net.Listener
	accepted  chan struct{}
	release   chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted <- struct{}{}
	<-l.release
	return c, nil
}

func (l *gatedListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}

// A connection accepted just as Shutdown begins used to deadlock the
// server: serveConn refused it while holding the server's mutex, and its
// Close took that mutex again, so every other connection's Close blocked
// too and Shutdown waited out its whole context.
func TestShutdownAsAConnectionIsAccepted(t *testing.T) {
	env := startServer(t, nil)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gate := &gatedListener{Listener: inner, accepted: make(chan struct{}, 1), release: make(chan struct{}), closed: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- env.srv.ServeSubmission(gate) }()

	idle := dialRaw(t, env.submission, nil)
	late, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	<-gate.accepted

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- env.srv.Shutdown(ctx) }()
	<-gate.closed // Shutdown has begun: the late connection comes now
	close(gate.release)

	wantShuttingDown(t, "the idle client", idle)
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeSubmission = %v after Shutdown, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("ServeSubmission did not return after Shutdown")
	}
	late.SetReadDeadline(time.Now().Add(waitLimit))
	if n, err := late.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the connection accepted during Shutdown read %d bytes, %v; want it closed", n, err)
	}
}
