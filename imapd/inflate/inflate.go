// Package inflate decodes raw DEFLATE (RFC 1951) for COMPRESS=DEFLATE.
//
// Unlike compress/flate's reader, a Reader hands over what it has decoded
// at the end of every block, and whenever it has decoded output and the
// bytes already received may not hold the next symbol; so a client that
// ends a command with zlib's Z_PARTIAL_FLUSH (an end of block and an empty
// fixed block whose last bits are still in the client's buffer) gets its
// command read at once. Memory is bounded: a 32 KiB window and a 4 KiB
// input buffer per Reader. Bad input gives an error, never a panic.
package inflate

import (
	"errors"
	"fmt"
	"io"
)

const (
	windowSize = 1 << 15
	maxMatch   = 258
	// maxPending is how much decoded output may wait undelivered; beyond
	// it the window would overwrite bytes not yet read.
	maxPending = windowSize - maxMatch
	// maxSymbolBits is the most input one length/distance pair takes:
	// 15-bit code, 5 extra bits, 15-bit distance code, 13 extra bits.
	maxSymbolBits = 48
	maxCodeBits   = 15
)

// ErrCorrupt is wrapped by every error for invalid DEFLATE data.
var ErrCorrupt = errors.New("inflate: corrupt input")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// huffman is a canonical code in the form of RFC 1951 3.2.2: the number
// of codes of each length and the symbols in code order.
type huffman struct {
	count  [maxCodeBits + 1]uint16
	symbol []uint16
}

// build sets h from code lengths. It refuses an over-subscribed set and,
// as compress/flate does, an incomplete one, except a set with a single
// one-bit code or with no codes at all (empty reports the latter).
func (h *huffman) build(lengths []uint8) (empty bool, err error) {
	h.count = [maxCodeBits + 1]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	if int(h.count[0]) == len(lengths) {
		h.symbol = h.symbol[:0]
		return true, nil
	}
	left := 1
	for l := 1; l <= maxCodeBits; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return false, corrupt("over-subscribed Huffman code")
		}
	}
	if left > 0 && !(len(lengths)-int(h.count[0]) == 1 && h.count[1] == 1) {
		return false, corrupt("incomplete Huffman code")
	}
	var offs [maxCodeBits + 2]uint16
	for l := 1; l <= maxCodeBits; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	n := len(lengths) - int(h.count[0])
	if cap(h.symbol) < n {
		h.symbol = make([]uint16, n)
	}
	h.symbol = h.symbol[:n]
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return false, nil
}

// Reader decodes a raw DEFLATE stream read from an io.Reader.
type Reader struct {
	r     io.Reader
	in    [4096]byte
	ip    int // next unread byte of in
	ie    int // end of the bytes read into in
	rerr  error
	bits  uint64
	nbits uint

	win   [windowSize]byte
	wpos  int  // next write position in win
	whole bool // win has been filled once
	pend  int  // decoded bytes not yet returned, ending at wpos
	flush bool // return pend before decoding more

	inBlock   bool
	final     bool
	stored    int     // bytes left of a stored block; -1 for a Huffman block
	lit, dist huffman // a dynamic block's codes
	litp      *huffman
	distp     *huffman
	noDist    bool
	lens      [286 + 30]uint8
	err       error
}

// NewReader returns a Reader decoding the raw DEFLATE stream from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Read returns decoded bytes. It returns io.EOF after the final block,
// io.ErrUnexpectedEOF if the input ends inside the stream, and an error
// wrapping ErrCorrupt for invalid data.
func (z *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if z.pend > 0 && (z.flush || z.err != nil || z.pend >= maxPending) {
			n := z.copyOut(p)
			if z.pend == 0 {
				z.flush = false
			}
			return n, nil
		}
		if z.err != nil {
			return 0, z.err
		}
		z.err = z.step()
	}
}

func (z *Reader) copyOut(p []byte) int {
	n := 0
	for n < len(p) && z.pend > 0 {
		start := z.wpos - z.pend
		if start < 0 {
			start += windowSize
		}
		end := start + z.pend
		if end > windowSize {
			end = windowSize
		}
		c := copy(p[n:], z.win[start:end])
		n += c
		z.pend -= c
	}
	return n
}

// fill reads more input; it blocks. It reports false when none came.
func (z *Reader) fill() bool {
	if z.rerr != nil {
		return false
	}
	if z.ip == z.ie {
		z.ip, z.ie = 0, 0
	}
	for tries := 0; tries < 100; tries++ {
		n, err := z.r.Read(z.in[z.ie:])
		z.ie += n
		if err != nil {
			z.rerr = err
		}
		if n > 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
	z.rerr = io.ErrNoProgress
	return false
}

// need loads at least n (≤ 57) bits, reading input as needed.
func (z *Reader) need(n uint) error {
	for z.nbits < n {
		if z.ip == z.ie && !z.fill() {
			if z.rerr == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return fmt.Errorf("inflate: reading input: %w", z.rerr)
		}
		z.bits |= uint64(z.in[z.ip]) << z.nbits
		z.ip++
		z.nbits += 8
	}
	return nil
}

func (z *Reader) getBits(n uint) (uint32, error) {
	if err := z.need(n); err != nil {
		return 0, err
	}
	v := uint32(z.bits & (1<<n - 1))
	z.bits >>= n
	z.nbits -= n
	return v, nil
}

func (z *Reader) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l <= maxCodeBits; l++ {
		if z.nbits == 0 {
			if err := z.need(1); err != nil {
				return 0, err
			}
		}
		code |= int(z.bits & 1)
		z.bits >>= 1
		z.nbits--
		count := int(h.count[l])
		if code-count < first {
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, corrupt("invalid Huffman code")
}

func (z *Reader) put(b byte) {
	z.win[z.wpos] = b
	z.wpos++
	if z.wpos == windowSize {
		z.wpos = 0
		z.whole = true
	}
	z.pend++
}

// step decodes until a block ends, output should be handed over, or an
// error.
func (z *Reader) step() error {
	if !z.inBlock {
		if z.final {
			return io.EOF
		}
		return z.header()
	}
	if z.stored >= 0 {
		return z.copyStored()
	}
	return z.huffmanBlock()
}

func (z *Reader) endBlock() {
	z.inBlock = false
	z.flush = true
}

func (z *Reader) header() error {
	h, err := z.getBits(3)
	if err != nil {
		return err
	}
	z.final = h&1 == 1
	switch h >> 1 {
	case 0:
		z.bits >>= z.nbits % 8
		z.nbits -= z.nbits % 8
		v, err := z.getBits(32)
		if err != nil {
			return err
		}
		n, nn := v&0xffff, v>>16
		if n != ^nn&0xffff {
			return corrupt("stored block length check")
		}
		z.stored = int(n)
	case 1:
		z.stored = -1
		z.litp, z.distp, z.noDist = &fixedLit, &fixedDist, false
	case 2:
		z.stored = -1
		if err := z.dynamic(); err != nil {
			return err
		}
		z.litp, z.distp = &z.lit, &z.dist
	default:
		return corrupt("reserved block type")
	}
	z.inBlock = true
	return nil
}

// The fixed codes of RFC 1951 3.2.6. Literal/length symbols 286 and 287
// and distance symbols 30 and 31 take part in the codes but are invalid.
var fixedLit, fixedDist = func() (huffman, huffman) {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	var d [32]uint8
	for i := range d {
		d[i] = 5
	}
	var lit, dist huffman
	if _, err := lit.build(l[:]); err != nil {
		panic(err)
	}
	if _, err := dist.build(d[:]); err != nil {
		panic(err)
	}
	return lit, dist
}()

var clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (z *Reader) dynamic() error {
	v, err := z.getBits(14)
	if err != nil {
		return err
	}
	nlit, ndist, nclen := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	if nlit > 286 || ndist > 30 {
		return corrupt("too many length or distance codes")
	}
	var cl [19]uint8
	for i := range nclen {
		b, err := z.getBits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(b)
	}
	var clh huffman
	if empty, err := clh.build(cl[:]); err != nil {
		return err
	} else if empty {
		return corrupt("empty code length code")
	}
	lens := z.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		sym, err := z.decode(&clh)
		if err != nil {
			return err
		}
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return corrupt("repeat with no previous length")
			}
			val = lens[i-1]
			b, err := z.getBits(2)
			if err != nil {
				return err
			}
			rep = 3 + int(b)
		case 17:
			b, err := z.getBits(3)
			if err != nil {
				return err
			}
			rep = 3 + int(b)
		default:
			b, err := z.getBits(7)
			if err != nil {
				return err
			}
			rep = 11 + int(b)
		}
		if i+rep > len(lens) {
			return corrupt("code lengths repeat past the end")
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		return corrupt("no end-of-block code")
	}
	if empty, err := z.lit.build(lens[:nlit]); err != nil {
		return err
	} else if empty {
		return corrupt("empty literal code")
	}
	empty, err := z.dist.build(lens[nlit:])
	if err != nil {
		return err
	}
	z.noDist = empty
	return nil
}

func (z *Reader) copyStored() error {
	for z.stored > 0 {
		if z.pend >= maxPending {
			return nil
		}
		if z.nbits >= 8 {
			z.put(byte(z.bits))
			z.bits >>= 8
			z.nbits -= 8
			z.stored--
			continue
		}
		if z.ip == z.ie {
			if z.pend > 0 {
				z.flush = true
				return nil
			}
			if err := z.need(8); err != nil {
				return err
			}
			continue
		}
		n := min(z.stored, z.ie-z.ip, maxPending-z.pend, windowSize-z.wpos)
		copy(z.win[z.wpos:], z.in[z.ip:z.ip+n])
		z.ip += n
		z.wpos += n
		if z.wpos == windowSize {
			z.wpos = 0
			z.whole = true
		}
		z.pend += n
		z.stored -= n
	}
	z.endBlock()
	return nil
}

var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtr = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

func (z *Reader) huffmanBlock() error {
	for z.pend < maxPending {
		if z.pend > 0 && z.nbits+8*uint(z.ie-z.ip) < maxSymbolBits {
			// The next symbol may need bytes not yet sent: hand over
			// what is decoded rather than wait for them.
			z.flush = true
			return nil
		}
		sym, err := z.decode(z.litp)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			z.put(byte(sym))
			continue
		case sym == 256:
			z.endBlock()
			return nil
		case sym > 285:
			return corrupt("invalid length symbol %d", sym)
		}
		sym -= 257
		e, err := z.getBits(uint(lenExtra[sym]))
		if err != nil {
			return err
		}
		length := int(lenBase[sym]) + int(e)
		if z.noDist {
			return corrupt("length with no distance code")
		}
		ds, err := z.decode(z.distp)
		if err != nil {
			return err
		}
		if ds >= 30 {
			return corrupt("invalid distance symbol %d", ds)
		}
		e, err = z.getBits(uint(distExtr[ds]))
		if err != nil {
			return err
		}
		d := int(distBase[ds]) + int(e)
		if !z.whole && d > z.wpos {
			return corrupt("distance %d beyond the data so far", d)
		}
		src := z.wpos - d
		if src < 0 {
			src += windowSize
		}
		for ; length > 0; length-- {
			z.put(z.win[src])
			src++
			if src == windowSize {
				src = 0
			}
		}
	}
	return nil
}
