package protocol

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

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

// partialFlushWriter compresses as zlib does with Z_PARTIAL_FLUSH after
// every write (isync/mbsync): a fixed-Huffman block of the bytes, its
// end-of-block code, then an empty fixed block, of which only the whole
// bytes are sent; the last bits wait in the writer for the next write.
type partialFlushWriter struct {
	w     io.Writer
	bits  uint64
	nbits uint
	out   []byte
}

// code appends a Huffman code of n bits, most significant bit first.
func (p *partialFlushWriter) code(c uint64, n uint) {
	var r uint64
	for i := uint(0); i < n; i++ {
		r = r<<1 | (c>>i)&1
	}
	p.put(r, n)
}

// put appends n bits, least significant first.
func (p *partialFlushWriter) put(v uint64, n uint) {
	p.bits |= v << p.nbits
	p.nbits += n
	for p.nbits >= 8 {
		p.out = append(p.out, byte(p.bits))
		p.bits >>= 8
		p.nbits -= 8
	}
}

func (p *partialFlushWriter) Write(b []byte) (int, error) {
	p.out = p.out[:0]
	p.put(0b010, 3) // not final, fixed Huffman
	for _, c := range b {
		if c < 144 {
			p.code(0x30+uint64(c), 8)
		} else {
			p.code(0x190+uint64(c)-144, 9)
		}
	}
	p.code(0, 7)    // end of block
	p.put(0b010, 3) // the empty fixed block of Z_PARTIAL_FLUSH
	p.code(0, 7)
	_, err := p.w.Write(p.out)
	return len(b), err
}

// An mbsync-style client, flushing each command with Z_PARTIAL_FLUSH, gets
// each answer without sending anything more: the server decodes the
// command at the block's end, before the empty block's last bits arrive.
func TestCompressPartialFlushClient(t *testing.T) {
	tc := startServer(t, Options{Caps: compressCaps()})
	tc.login()
	tc.send("p1 COMPRESS DEFLATE\r\n")
	tc.expect("p1 OK")
	tc.r = bufio.NewReader(flate.NewReader(tc.c))
	pw := &partialFlushWriter{w: tc.c}
	for i, cmd := range []string{"p2 NOOP\r\n", "p3 SELECT INBOX\r\n", "p4 FETCH 1 BODY[TEXT]\r\n", "p5 NOOP\r\n"} {
		if _, err := pw.Write([]byte(cmd)); err != nil {
			t.Fatal(err)
		}
		tag := strings.Fields(cmd)[0]
		if lines := tc.until(tag); !strings.HasPrefix(lines[len(lines)-1], tag+" OK") {
			t.Fatalf("command %d over partial-flush DEFLATE: %q", i, lines)
		}
	}
}

// A decompression bomb: a few kilobytes that decode to a line of 64 MiB.
// The decoded stream meets the same command limit as a cleartext one, so
// the server closes the connection with a BYE instead of buffering it.
func TestCompressBombClosesConnection(t *testing.T) {
	tc := startServer(t, Options{Caps: compressCaps()})
	tc.login()
	tc.send("b1 COMPRESS DEFLATE\r\n")
	tc.expect("b1 OK")
	dc := startDeflate(tc)
	var bomb bytes.Buffer
	fw, _ := flate.NewWriter(&bomb, flate.BestCompression)
	fw.Write([]byte("b2 NOOP "))
	x := bytes.Repeat([]byte("x"), 1<<20)
	for range 64 {
		fw.Write(x)
	}
	fw.Flush()
	if bomb.Len() > 200<<10 {
		t.Fatalf("bomb is %d bytes", bomb.Len())
	}
	// The server stops reading part way; the write may then fail.
	go tc.c.Write(bomb.Bytes())
	bye := dc.expect("* BYE")
	if !strings.Contains(bye, "too long") {
		t.Errorf("bomb answered with %q, want the too-long BYE", bye)
	}
	if l := dc.line(); l != "" {
		t.Errorf("after the BYE: %q, want the connection closed", l)
	}
}

// Cleartext after COMPRESS's OK is not DEFLATE: the server ends the
// connection rather than run it as a command.
func TestCompressGarbageAfterOK(t *testing.T) {
	tc := startServer(t, Options{Caps: compressCaps()})
	tc.login()
	tc.send("g1 COMPRESS DEFLATE\r\n")
	tc.expect("g1 OK")
	tc.send("g2 NOOP\r\ng3 NOOP\r\n")
	r := flate.NewReader(tc.c)
	tc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(r)
	if strings.Contains(string(got), "g2 OK") {
		t.Fatalf("cleartext after COMPRESS ran: %q", got)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after garbage: read %q", got)
	}
	if tc.server.isCompressed() != true {
		t.Error("the connection does not report DEFLATE active")
	}
}
