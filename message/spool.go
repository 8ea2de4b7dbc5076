package message

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// SpoolAfter is how big a message read by Read grows in memory before the
// rest goes to a spool file.
const SpoolAfter = 1 << 20

// Buffer is a message read at intake: Bytes is the headroom, then the
// message. A big message lives in an unlinked spool file mapped privately
// into memory, so its pages are the file's (the kernel can drop and
// re-read them) rather than the daemon's heap; only pages written to (the
// header edited in place) become the daemon's own. Release must be called
// once nothing refers to Bytes any more.
type Buffer struct {
	data   []byte
	mapped bool
}

// Bytes returns the headroom followed by the message.
func (b *Buffer) Bytes() []byte { return b.data }

// Release frees the buffer; Bytes must not be used afterwards.
func (b *Buffer) Release() error {
	data, mapped := b.data, b.mapped
	b.data, b.mapped = nil, false
	if mapped {
		if err := syscall.Munmap(data); err != nil {
			return fmt.Errorf("unmapping a spooled message: %w", err)
		}
	}
	return nil
}

// Read reads a message like ReadAll; past SpoolAfter bytes, when spoolDir
// is not "", the rest streams into a spool file in spoolDir, unlinked as
// soon as it is created (nothing is left behind, even by kill -9), which
// is then mapped into memory. So a message in flight costs the daemon
// about its header and a few buffers, whatever its size.
func Read(r io.Reader, headroom int, limit int64, spoolDir string) (*Buffer, error) {
	buf := make([]byte, headroom, headroom+readChunk)
	var chunk [readChunk]byte
	prevCR := false
	var total int64
	for {
		n, err := r.Read(chunk[:])
		if n > 0 {
			before := len(buf)
			buf, prevCR = appendCRLF(buf, chunk[:n], prevCR)
			total += int64(len(buf) - before)
			if total > limit {
				return nil, ErrTooLarge
			}
			if spoolDir != "" && total > SpoolAfter && !errors.Is(err, io.EOF) {
				return spool(r, buf, prevCR, total, limit, spoolDir)
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
	return &Buffer{data: buf}, nil
}

// spool writes head and the rest of r, normalised, to an unlinked file in
// dir and maps it.
func spool(r io.Reader, head []byte, prevCR bool, total, limit int64, dir string) (*Buffer, error) {
	f, err := os.CreateTemp(dir, ".intake-*")
	if err != nil {
		return nil, fmt.Errorf("creating a spool file: %w", err)
	}
	defer f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return nil, fmt.Errorf("unlinking the spool file: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	if _, err := w.Write(head); err != nil {
		return nil, fmt.Errorf("writing the spool file: %w", err)
	}
	size := int64(len(head))
	var chunk [readChunk]byte
	out := make([]byte, 0, 2*readChunk)
	for {
		n, rerr := r.Read(chunk[:])
		if n > 0 {
			out, prevCR = appendCRLF(out[:0], chunk[:n], prevCR)
			total += int64(len(out))
			if total > limit {
				return nil, ErrTooLarge
			}
			if _, err := w.Write(out); err != nil {
				return nil, fmt.Errorf("writing the spool file: %w", err)
			}
			size += int64(len(out))
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("reading the message: %w", rerr)
		}
	}
	if prevCR {
		if err := w.WriteByte('\n'); err != nil {
			return nil, fmt.Errorf("writing the spool file: %w", err)
		}
		size++
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("writing the spool file: %w", err)
	}
	if size != int64(int(size)) {
		return nil, ErrTooLarge
	}
	// MAP_PRIVATE: the header is edited in place; those pages become
	// the daemon's copy and the file never changes.
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mapping the spool file: %w", err)
	}
	return &Buffer{data: data, mapped: true}, nil
}
