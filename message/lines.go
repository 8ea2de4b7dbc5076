package message

import (
	"errors"
	"fmt"
	"io"
)

// readChunk is how much ReadAll asks of its reader at a time.
const readChunk = 32 << 10

// ErrTooLarge is returned by ReadAll for a message over its limit.
var ErrTooLarge = errors.New("message too large")

// ReadAll reads a whole message from r into one buffer, turning every bare
// CR and bare LF into CRLF (RFC 5322 2.3; a lone CR would otherwise reach
// IMAP clients and relays that read it as a line end, or as "\r.\r").
//
// The returned slice has headroom free bytes before the message
// (buf[headroom:] is the message), so a caller can put header fields in
// front of it without copying the body. The buffer grows with the bytes
// actually read, never with a size announced beforehand; a message
// longer than limit bytes (after normalising) fails with ErrTooLarge.
// The caller's reader error, if any, is returned wrapped.
func ReadAll(r io.Reader, headroom int, limit int64) ([]byte, error) {
	// Up to blockSize the buffer grows by append; past it the bytes go
	// into blocks of blockSize, copied once into a buffer of the exact
	// size at the end. So a big message costs its size plus at most its
	// size again for a moment, and allocates about twice its size in all,
	// where growing one buffer would allocate four times and keep up to
	// a quarter unused.
	const blockSize = 1 << 20
	buf := make([]byte, headroom, headroom+readChunk)
	var blocks [][]byte
	total := int64(0)
	var chunk [readChunk]byte
	prevCR := false
	for {
		n, err := r.Read(chunk[:])
		if n > 0 {
			before := len(buf)
			if blocks == nil && len(buf)+2*n > blockSize && len(buf) > headroom {
				// Keep the small head as it is: it is the first block.
				blocks = append(blocks, buf)
				buf = make([]byte, 0, blockSize)
				before = 0
			} else if blocks != nil && len(buf)+2*n > cap(buf) {
				blocks = append(blocks, buf)
				buf = make([]byte, 0, blockSize)
				before = 0
			}
			buf, prevCR = appendCRLF(buf, chunk[:n], prevCR)
			total += int64(len(buf) - before)
			if total > limit {
				return nil, ErrTooLarge
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the message: %w", err)
		}
	}
	if prevCR {
		buf = append(buf, '\n')
	}
	if blocks == nil {
		return buf, nil
	}
	size := len(buf)
	for _, b := range blocks {
		size += len(b)
	}
	out := make([]byte, 0, size)
	for _, b := range blocks {
		out = append(out, b...)
	}
	return append(out, buf...), nil
}

// NormalizeLineEndings returns raw with every bare CR and bare LF turned
// into CRLF; raw itself when it has none.
func NormalizeLineEndings(raw []byte) []byte {
	if hasOnlyCRLF(raw) {
		return raw
	}
	out, prevCR := appendCRLF(make([]byte, 0, len(raw)+len(raw)/16+2), raw, false)
	if prevCR {
		out = append(out, '\n')
	}
	return out
}

// hasOnlyCRLF reports whether every CR and LF of raw is part of a CRLF.
func hasOnlyCRLF(raw []byte) bool {
	for i, c := range raw {
		switch c {
		case '\r':
			if i+1 >= len(raw) || raw[i+1] != '\n' {
				return false
			}
		case '\n':
			if i == 0 || raw[i-1] != '\r' {
				return false
			}
		}
	}
	return true
}

// appendCRLF appends p to dst with line endings made CRLF. prevCR says the
// byte before p was a CR whose LF has not been written yet; the result says
// the same of p's last byte.
func appendCRLF(dst, p []byte, prevCR bool) ([]byte, bool) {
	start := 0
	for i, c := range p {
		switch {
		case prevCR && c == '\n':
			prevCR = false
			continue
		case prevCR:
			// A bare CR: complete it.
			dst = append(dst, p[start:i]...)
			dst = append(dst, '\n')
			start = i
			prevCR = false
		}
		switch c {
		case '\r':
			prevCR = true
		case '\n':
			// A bare LF (a CRLF's LF was skipped above).
			dst = append(dst, p[start:i]...)
			dst = append(dst, '\r', '\n')
			start = i + 1
		}
	}
	return append(dst, p[start:]...), prevCR
}
