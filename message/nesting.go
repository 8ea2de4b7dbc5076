package message

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// MaxNesting is the deepest MIME structure pochta stores: a part may sit
// inside at most this many multiparts and message/rfc822 parts (Postfix's
// mime_nesting_limit is the same 100). The store's record encoder refuses
// and its decoder rejects anything deeper, with this one constant.
const MaxNesting = 100

// ErrTooDeep is returned for a message nested deeper than MaxNesting.
var ErrTooDeep = fmt.Errorf("MIME structure nested deeper than %d levels", MaxNesting)

// IsTooDeep reports whether err says a message was nested too deeply.
func IsTooDeep(err error) bool { return errors.Is(err, ErrTooDeep) }

// MaxParts is the most MIME parts pochta stores in one message, counting
// the message itself, every part of every multipart and every
// encapsulated message (Dovecot's max_total_mime_parts is the same
// 10,000; Postfix has no such limit). The store's record encoder refuses
// and its decoder rejects a body structure with more, with this one
// constant.
const MaxParts = 10000

// ErrTooManyParts is returned for a message of more than MaxParts parts.
var ErrTooManyParts = fmt.Errorf("MIME structure of more than %d parts", MaxParts)

// IsTooManyParts reports whether err says a message had too many parts.
func IsTooManyParts(err error) bool { return errors.Is(err, ErrTooManyParts) }

// MaxHeaderBytes is the largest header section pochta stores, for the
// message's own header and for each MIME part's: 256 KiB, Exchange's
// default header limit (Postfix keeps at most 100 KB of each header field
// and drops the rest; pochta refuses rather than store half a header).
// Every reader of a header (the From check, the envelope, the body
// structure) holds it whole in memory, several times over, so without a
// bound one message of a 20 MB header cost a gigabyte.
const MaxHeaderBytes = 256 << 10

// ErrHeaderTooBig is returned for a message with a header section over
// MaxHeaderBytes.
var ErrHeaderTooBig = fmt.Errorf("a header section larger than %d KiB", MaxHeaderBytes>>10)

// IsHeaderTooBig reports whether err says a message's header was too big.
func IsHeaderTooBig(err error) bool { return errors.Is(err, ErrHeaderTooBig) }

// CheckHeaderSize returns ErrHeaderTooBig when the message's own header
// (its lines up to the first empty one, line ends counted) is over
// MaxHeaderBytes; it reads at most that much of raw. CheckStructure checks
// the same and every part's header too; this is for a check before the
// whole structure is walked.
func CheckHeaderSize(raw []byte) error {
	n := 0
	for pos := 0; pos < len(raw); {
		end := len(raw)
		if i := bytes.IndexByte(raw[pos:min(len(raw), pos+MaxHeaderBytes+2)], '\n'); i >= 0 {
			end = pos + i + 1
		} else if len(raw)-pos > MaxHeaderBytes+1 {
			return ErrHeaderTooBig // one line longer than the limit
		}
		if len(bytes.TrimRight(raw[pos:end], "\r\n")) == 0 {
			return nil
		}
		if n += end - pos; n > MaxHeaderBytes {
			return ErrHeaderTooBig
		}
		pos = end
	}
	return nil
}

// maxHeaderScan bounds how much of one part's header CheckStructure keeps to
// find its Content-Type: a field longer than this is not a Content-Type
// any parser in pochta reads as multipart.
const maxHeaderScan = 16 << 10

// nestingFrame is one open container: a multipart with its boundary (which
// may be "", as go-message reads a Content-Type it cannot parse), or a
// message/rfc822 part.
type nestingFrame struct {
	multipart bool
	boundary  string
}

// CheckStructure returns ErrTooDeep when the MIME structure of raw (a
// whole message, header first) is nested deeper than MaxNesting,
// ErrTooManyParts when it has more than MaxParts parts, and
// ErrHeaderTooBig when its header or a part's is over MaxHeaderBytes. It reads raw once,
// line by line, keeping a stack of the open multipart boundaries, so its
// cost is linear in len(raw): at most MaxNesting boundaries are compared
// per boundary-looking line, because it stops at the first level past the
// limit, and it stops at the first part past MaxParts.
func CheckStructure(raw []byte) error {
	var stack []nestingFrame
	parts := 1 // the message itself
	pos := 0
	inHeader := true
	var contentType []byte // the current part's first Content-Type, unfolded
	inContentType, seenContentType := false, false
	headerBytes := 0 // of the header being read
	for pos < len(raw) {
		end := len(raw)
		if i := bytes.IndexByte(raw[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := bytes.TrimRight(raw[pos:end], "\r\n")
		if inHeader && len(line) > 0 {
			// The header's lines with their line ends; not the blank line.
			if headerBytes += end - pos; headerBytes > MaxHeaderBytes {
				return ErrHeaderTooBig
			}
		}
		pos = end
		if inHeader {
			switch {
			case len(line) == 0:
				inHeader, inContentType, seenContentType = false, false, false
				headerBytes = 0
				opened, err := openContainer(contentType, &stack)
				if err != nil {
					return err
				}
				contentType = contentType[:0]
				if opened && !stack[len(stack)-1].multipart {
					// message/rfc822: its body is a message, header
					// first, and a part of its own.
					inHeader = true
					if parts++; parts > MaxParts {
						return ErrTooManyParts
					}
				}
			case line[0] == ' ' || line[0] == '\t':
				if inContentType && len(contentType)+len(line) <= maxHeaderScan {
					contentType = append(contentType, line...)
				}
			default:
				inContentType = false
				name, value, ok := bytes.Cut(line, []byte(":"))
				if ok && !seenContentType && strings.EqualFold(string(bytes.TrimRight(name, " \t")), "Content-Type") {
					// The first one counts, as in go-message.
					inContentType, seenContentType = true, true
					contentType = append(contentType[:0], value[:min(len(value), maxHeaderScan)]...)
				}
			}
			continue
		}
		if len(line) < 3 || line[0] != '-' || line[1] != '-' {
			continue
		}
		// A boundary line closes every container inside the multipart
		// it belongs to. The outermost match wins: a MIME parser reads an
		// inner multipart through its outer part, which ends first.
		for i := 0; i < len(stack); i++ {
			b := stack[i].boundary
			if !stack[i].multipart || !isBoundaryLine(line[2:], b) {
				continue
			}
			rest := line[2+len(b):]
			stack = stack[:i+1]
			if bytes.HasPrefix(rest, []byte("--")) {
				// The close delimiter: the multipart ends here.
				stack = stack[:i]
				break
			}
			// A new part of stack[i] begins: it sits inside len(stack)
			// containers.
			if len(stack) > MaxNesting {
				return ErrTooDeep
			}
			if parts++; parts > MaxParts {
				return ErrTooManyParts
			}
			inHeader = true
			contentType = contentType[:0]
			break
		}
	}
	return nil
}

// isBoundaryLine reports whether s (a line after its leading "--") is a
// delimiter of boundary b: b, then optionally "--", then only blanks
// (RFC 2046 5.1.1).
func isBoundaryLine(s []byte, b string) bool {
	if !bytes.HasPrefix(s, []byte(b)) {
		return false
	}
	rest := bytes.TrimPrefix(s[len(b):], []byte("--"))
	return len(bytes.Trim(rest, " \t")) == 0
}

// openContainer pushes a frame when contentType names a multipart or an
// encapsulated message, read as go-message reads it for go-imap's body
// structure (parameters RFC 2047-decoded; an unparsable value taken whole,
// so "multipart/..." with broken parameters is a multipart with boundary
// ""), and reports whether it did. The part that opens it sits inside
// len(*stack) containers; its children one more, which is what is checked
// against MaxNesting.
func openContainer(contentType []byte, stack *[]nestingFrame) (bool, error) {
	if len(contentType) == 0 {
		return false, nil
	}
	var h textproto.Header
	h.Set("Content-Type", strings.TrimSpace(string(contentType)))
	mediaType, params, _ := (&gomessage.Header{Header: h}).ContentType()
	primary, _, _ := strings.Cut(mediaType, "/")
	switch {
	case primary == "multipart":
		*stack = append(*stack, nestingFrame{multipart: true, boundary: params["boundary"]})
	case mediaType == "message/rfc822" || mediaType == "message/global":
		*stack = append(*stack, nestingFrame{})
		if len(*stack) > MaxNesting {
			return true, ErrTooDeep
		}
	default:
		return false, nil
	}
	return true, nil
}
