package inflate

import (
	"bytes"
	"compress/flate"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// errWouldBlock is what chunkReader returns when the test has not yet
// given it the next chunk: a Reader that asks for it has failed to hand
// over what was already sent.
var errWouldBlock = errors.New("reader asked for input the client has not sent")

type chunkReader struct {
	data []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

type partialStream struct {
	Level  int
	Chunks []struct {
		Plain   string
		Deflate string
	}
}

// Each command of a Z_PARTIAL_FLUSH stream (zlib, as isync/mbsync sends)
// is readable as soon as its bytes are in, without waiting for more.
func TestPartialFlushYieldsEachCommand(t *testing.T) {
	raw, err := os.ReadFile("testdata/partial_flush.json")
	if err != nil {
		t.Fatal(err)
	}
	var streams []partialStream
	if err := json.Unmarshal(raw, &streams); err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		src := &chunkReader{}
		z := NewReader(src)
		for i, c := range s.Chunks {
			b, err := hex.DecodeString(c.Deflate)
			if err != nil {
				t.Fatal(err)
			}
			src.data = append(src.data, b...)
			got := make([]byte, len(c.Plain))
			if _, err := io.ReadFull(z, got); err != nil {
				t.Fatalf("level %d command %d: %v", s.Level, i, err)
			}
			if string(got) != c.Plain {
				t.Fatalf("level %d command %d: got %.60q, want %.60q", s.Level, i, got, c.Plain)
			}
		}
	}
}

// Go's own writer with a sync flush after each write: each write is
// readable at once too, and the stream's end is io.EOF.
func TestSyncFlushAndEOF(t *testing.T) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	src := &chunkReader{}
	z := NewReader(src)
	for i := range 50 {
		msg := strings.Repeat("a12 UID FETCH 1:* FLAGS\r\n", i*40+1)
		w.Write([]byte(msg))
		w.Flush()
		src.data = append(src.data, buf.Bytes()...)
		buf.Reset()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(z, got); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if string(got) != msg {
			t.Fatalf("write %d: wrong bytes", i)
		}
	}
	w.Close()
	src.data = append(src.data, buf.Bytes()...)
	if n, err := z.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("after the final block: %d, %v; want 0, EOF", n, err)
	}
}

// A tiny input that decodes to a huge output is read in bounded pieces,
// so the caller's own limit (the IMAP line limit) decides when to stop.
func TestBombReadsInBoundedPieces(t *testing.T) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	zero := make([]byte, 1<<20)
	for range 64 {
		w.Write(zero)
	}
	w.Close()
	if buf.Len() > 100<<10 {
		t.Fatalf("64 MiB compressed to %d bytes; not a bomb", buf.Len())
	}
	z := NewReader(bytes.NewReader(buf.Bytes()))
	p := make([]byte, 1<<20)
	total := 0
	for {
		n, err := z.Read(p)
		if n > windowSize {
			t.Fatalf("one Read returned %d bytes, more than the window", n)
		}
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != 64<<20 {
		t.Fatalf("decoded %d bytes, want %d", total, 64<<20)
	}
}

func TestBadInput(t *testing.T) {
	for name, in := range map[string][]byte{
		"reserved block type":  {0x07},
		"stored length check":  {0x01, 0x05, 0x00, 0x05, 0x00},
		"distance before data": {0x03, 0x02},
		"truncated":            {0x4b, 0x4c},
	} {
		_, err := io.ReadAll(NewReader(bytes.NewReader(in)))
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Not DEFLATE at all: an IMAP command sent in clear after COMPRESS.
	_, err := io.ReadAll(NewReader(strings.NewReader("a2 NOOP\r\n")))
	if err == nil {
		t.Error("cleartext decoded without an error")
	}
}

// FuzzInflateMatchesStdlib decodes the same stream with compress/flate and
// with Reader: where the standard library decodes it, Reader gives the
// same bytes, and it refuses what compress/flate refuses; neither may panic.
func FuzzInflateMatchesStdlib(f *testing.F) {
	for _, lvl := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.HuffmanOnly} {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, lvl)
		w.Write([]byte("a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na2 SELECT INBOX\r\n"))
		w.Flush()
		w.Write(bytes.Repeat([]byte("xyz"), 300))
		w.Close()
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0x07})
	f.Fuzz(func(t *testing.T, in []byte) {
		want, werr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(in)), 1<<22))
		got, gerr := io.ReadAll(io.LimitReader(NewReader(bytes.NewReader(in)), 1<<22))
		if werr == nil && gerr != nil {
			t.Fatalf("compress/flate decodes it, Reader: %v", gerr)
		}
		if werr == nil && gerr == nil && !bytes.Equal(got, want) {
			t.Fatalf("outputs differ: got %d bytes, compress/flate %d", len(got), len(want))
		}
		if gerr == nil && werr != nil {
			// compress/flate refuses what Reader accepts.
			t.Fatalf("Reader decodes it, compress/flate: %v", werr)
		}
	})
}
