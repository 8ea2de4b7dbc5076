package control

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// The control socket is created 0600, and on top of that every connection
// is checked with the kernel's word for who is on the other end
// (SO_PEERCRED): only root and the user the daemon runs as may administer
// it. The mode alone is not enough where the data directory's owner is
// another user or the socket's mode was changed by hand.

// peerAllowed reports whether a peer with uid may use the control socket
// of a daemon running as self.
func peerAllowed(uid, self uint32) bool {
	return uid == 0 || uid == self
}

// credListener accepts only the connections peerAllowed lets in; the others
// are told why in an HTTP reply (the CLI prints it) and closed.
type credListener struct {
	net.Listener
	self uint32
	log  *slog.Logger
}

func newCredListener(l net.Listener) *credListener {
	return &credListener{Listener: l, self: uint32(os.Geteuid()), log: slog.Default()}
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && peerAllowed(uid, l.self) {
			return c, nil
		}
		var reason string
		if err != nil {
			reason = fmt.Sprintf("cannot tell who is connecting (%v)", err)
		} else {
			reason = fmt.Sprintf("user %d may not administer this daemon: only root and the user it runs as (uid %d) may", uid, l.self)
		}
		go refuse(c, reason, l.log)
	}
}

// refuse answers the first request on c with 403 and reason, then closes c.
// The request head is read first (at most 8 KiB), so that the client sees
// the answer rather than a reset. Only a connection that sent a request is
// logged: the CLI's Dial probes the socket with an empty connection first.
func refuse(c net.Conn, reason string, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := http.ReadRequest(bufio.NewReader(io.LimitReader(c, 8<<10))); err != nil {
		return
	}
	log.Warn("control: connection refused", "reason", reason)
	body := fmt.Sprintf(`{"error":%q}`+"\n", "control socket: "+reason)
	fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// SetUnlinkOnClose passes through to the Unix listener (see
// net.UnixListener.SetUnlinkOnClose).
func (l *credListener) SetUnlinkOnClose(unlink bool) {
	if u, ok := l.Listener.(*net.UnixListener); ok {
		u.SetUnlinkOnClose(unlink)
	}
}
