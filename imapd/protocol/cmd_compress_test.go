package protocol

import (
	"bufio"
	"compress/flate"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func compressCaps() imap.CapSet {
	caps := testCaps.Copy()
	caps[CapCompressDeflate] = struct{}{}
	return caps
}

// deflateClient turns tc into a client that compresses both ways, as
// RFC 4978 asks after the tagged OK; its send flushes each command.
type deflateClient struct {
	*testConn
	fw *flate.Writer
}

func startDeflate(tc *testConn) *deflateClient {
	tc.r = bufio.NewReader(flate.NewReader(tc.c))
	fw, err := flate.NewWriter(tc.c, flate.DefaultCompression)
	if err != nil {
		tc.t.Fatal(err)
	}
	return &deflateClient{testConn: tc, fw: fw}
}

func (dc *deflateClient) send(s string) {
	dc.t.Helper()
	if _, err := dc.fw.Write([]byte(s)); err != nil {
		dc.t.Fatal(err)
	}
	if err := dc.fw.Flush(); err != nil {
		dc.t.Fatal(err)
	}
}

func TestCompressDeflateBothWays(t *testing.T) {
	tc := startServer(t, Options{Caps: compressCaps()})
	tc.login()
	tc.send("c0 CAPABILITY\r\n")
	if lines := tc.until("c0"); !strings.Contains(lines[0], " COMPRESS=DEFLATE") {
		t.Fatalf("COMPRESS=DEFLATE not advertised after login: %q", lines[0])
	}
	tc.send("c1 COMPRESS DEFLATE\r\n")
	tc.expect("c1 OK")

	dc := startDeflate(tc)
	dc.send("c2 SELECT INBOX\r\n")
	if lines := dc.until("c2"); !strings.HasPrefix(lines[len(lines)-1], "c2 OK") {
		t.Fatalf("SELECT over DEFLATE: %q", lines)
	}
	dc.send("c3 FETCH 1 BODY[TEXT]\r\n")
	lines := dc.until("c3")
	if got := strings.Join(lines, "\n"); !strings.Contains(got, "Hi there") || !strings.HasPrefix(lines[len(lines)-1], "c3 OK") {
		t.Fatalf("FETCH over DEFLATE: %q", lines)
	}
	dc.send("c4 COMPRESS DEFLATE\r\n")
	dc.expect("c4 NO [COMPRESSIONACTIVE]")
	dc.send("c5 CAPABILITY\r\n")
	if lines := dc.until("c5"); strings.Contains(lines[0], "COMPRESS=") {
		t.Fatalf("COMPRESS still advertised while active: %q", lines[0])
	}
	dc.send("c6 LOGOUT\r\n")
	dc.expect("* BYE")
	dc.expect("c6 OK")
}

func TestCompressRefusals(t *testing.T) {
	tc := startServer(t, Options{Caps: compressCaps()})
	tc.send("a1 COMPRESS DEFLATE\r\n")
	tc.expect("a1 BAD")
	tc.login()
	tc.send("a2 COMPRESS LZW\r\n")
	tc.expect("a2 BAD")
	// Bytes pipelined behind COMPRESS are refused rather than guessed at.
	tc.send("a3 COMPRESS DEFLATE\r\na4 NOOP\r\n")
	tc.expect("a3 BAD")
	tc.expect("a4 OK")

	plain := startServer(t, Options{})
	plain.login()
	plain.send("b1 COMPRESS DEFLATE\r\n")
	plain.expect("b1 BAD")
}
