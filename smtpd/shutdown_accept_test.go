package smtpd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// gatedListener hands out the connection it accepted only once Close has
// been called: the connection arrives after Shutdown has begun, as one
// does when a client connects just as the daemon stops.
type gatedListener struct {
	net.Listener
	closed chan struct{}
	once   sync.Once
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	<-l.closed
	return c, nil
}

func (l *gatedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// A connection accepted while Shutdown runs used to be closed with the
// server's lock held; closing it takes that lock too, so the accept loop
// hung for good, and every later connection's close with it (the daemon
// then waited out its whole shutdown timeout: "smtpd: shutdown: context
// deadline exceeded", e2e lifecycle).
func TestAConnectionArrivingDuringShutdownDoesNotHangTheServer(t *testing.T) {
	serverTLS, _ := testTLS(t)
	srv, err := New(Options{
		Hostname: testHostname, Domains: []string{testDomain}, Store: openStore(t), TLSConfig: serverTLS,
		MaxMessageSize: testMaxSize, MaxRecipients: 5, TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &gatedListener{Listener: inner, closed: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- srv.ServeSubmission(l) }()
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeSubmission returned %v after Shutdown, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the accept loop hung on the connection that arrived during Shutdown")
	}
	// The server's lock is free again: a second Shutdown returns.
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("a second Shutdown hung: the server's lock is still held")
	}
}
