package imapd

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/trace"
)

// COMPRESS after STARTTLS: DEFLATE sits above TLS; the protocol trace
// still shows the cleartext commands and responses, and the idle timeout
// (the guarded connection underneath) still ends a silent client with a
// BYE it can read through the compression.
func TestCompressAfterStartTLSKeepsTraceAndIdleTimeout(t *testing.T) {
	log := &traceLog{changed: make(chan struct{})}
	tr := trace.New(slog.New(slog.NewJSONHandler(log, nil)))
	tr.Set([]string{alice})
	e := newTestEnv(t, withOptions(func(o *Options) {
		o.Trace = tr
		o.IdleTimeout = 500 * time.Millisecond
		o.CompressDeflate = true
	}))
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLimit))
	plain := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	plain.expect("* OK")
	plain.ok("a STARTTLS")
	tc := tls.Client(conn, e.clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c := &rawConn{t: t, conn: tc, r: bufio.NewReader(tc)}
	c.ok(fmt.Sprintf(`b LOGIN "%s" "%s"`, alice, password))
	c.ok("c COMPRESS DEFLATE")

	fw, err := flate.NewWriter(tc, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	z := &rawConn{t: t, conn: &flateConn{Conn: tc, w: fw}, r: bufio.NewReader(flate.NewReader(tc))}
	if lines := z.ok("d SELECT INBOX"); len(lines) == 0 {
		t.Fatal("SELECT over DEFLATE gave no untagged responses")
	}
	// Silent past the idle timeout: the BYE arrives compressed.
	bye := z.expect("* BYE")
	if !strings.Contains(bye, "Autologout") {
		t.Errorf("idle client got %q, want the autologout BYE", bye)
	}
	if _, err := z.r.ReadString('\n'); err == nil {
		t.Error("the connection is still open after the BYE")
	}
	recs := log.waitFor(t, alice, "S", "* BYE")
	wantInOrder(t, recs, "C: c COMPRESS DEFLATE", "S: c OK", "C: d SELECT INBOX", "S: d OK", "S: * BYE")
}

// flateConn writes through a DEFLATE compressor, flushing every write.
type flateConn struct {
	net.Conn
	w *flate.Writer
}

func (c *flateConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, c.w.Flush()
}

var _ io.Writer = (*flateConn)(nil)
