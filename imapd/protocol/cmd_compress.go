package protocol

import (
	"compress/flate"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/inflate"
	"github.com/pochta/pochta/imapd/wire"
)

// COMPRESS=DEFLATE (RFC 4978): after the tagged OK both directions are raw
// DEFLATE (RFC 1951, no zlib header), and every response is followed by a
// sync flush so the client can decode it at once. Compression sits between
// the protocol reader/writer and the connection (TLS, and below it the
// embedding server's net.Conn), so deadlines and the abuse limits still act
// on the connection, and the trace still sees cleartext.
//
// The client's stream is decoded by imapd/inflate, not compress/flate:
// that one hands over a command only at a sync flush, and isync/mbsync
// ends each command with zlib's Z_PARTIAL_FLUSH. The decoded stream goes
// through the same line and literal limits as a cleartext one, so a small
// input decoding to a huge line ends like any over-long line.

// CapCompressDeflate is the capability of RFC 4978.
const CapCompressDeflate imap.Cap = "COMPRESS=DEFLATE"

// compressLevel is flate.BestSpeed: its compressor needs a fraction of the
// default level's memory per connection, and mail text compresses well
// even so.
const compressLevel = flate.BestSpeed

func (c *Conn) handleCompress(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	alg, err := d.Atom()
	if err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	if !strings.EqualFold(alg, "DEFLATE") {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
			Text: "Unknown compression mechanism " + clip(alg) + "; only DEFLATE is offered"}
	}
	c.mu.Lock()
	active := c.compressed
	c.mu.Unlock()
	if active {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "COMPRESSIONACTIVE", Text: "DEFLATE is already active"}
	}
	if c.dec.Buffered() > 0 {
		// RFC 4978 3: the client sends nothing more until it has the
		// tagged OK; bytes sent before it cannot be told compressed or not.
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
			Text: "Nothing may follow COMPRESS before its response"}
	}
	if err := c.respond(func(e *wire.Encoder) {
		e.Status(cmd.tag, imap.StatusResponseTypeOK, "", "DEFLATE active")
	}); err != nil {
		return err
	}
	cmd.responded = true
	c.encMu.Lock()
	c.mu.Lock()
	c.compressed = true
	nc := c.conn
	c.mu.Unlock()
	c.encMu.Unlock()
	c.setStreams(nc)
	return nil
}

// compressStreams wraps the connection's reader and writer in DEFLATE.
func compressStreams(r io.Reader, w io.Writer) (io.Reader, io.Writer) {
	fw, err := flate.NewWriter(w, compressLevel)
	if err != nil {
		panic(err) // only for a level out of range
	}
	return inflate.NewReader(r), &flushingWriter{fw: fw}
}

// flushingWriter sync-flushes after every write. Its writes come from the
// connection's bufio.Writer, once per response (and per buffer-full within
// a long one), so each response reaches the client whole.
type flushingWriter struct {
	fw *flate.Writer
}

func (w *flushingWriter) Write(p []byte) (int, error) {
	n, err := w.fw.Write(p)
	if err != nil {
		return n, err
	}
	return n, w.fw.Flush()
}

func (c *Conn) isCompressed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.compressed
}
