package message

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strings"
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

// maxHeaderScan bounds how much of one part's header CheckNesting keeps to
// find its Content-Type: a field longer than this is not a Content-Type
// any parser in pochta reads as multipart.
const maxHeaderScan = 16 << 10

// nestingFrame is one open container: a multipart with its boundary, or a
// message/rfc822 part (boundary "").
type nestingFrame struct {
	boundary string
}

// CheckNesting returns ErrTooDeep when the MIME structure of raw (a whole
// message, header first) is nested deeper than MaxNesting. It reads raw
// once, line by line, keeping a stack of the open multipart boundaries, so
// its cost is linear in len(raw): at most MaxNesting boundaries are
// compared per boundary-looking line, because it stops at the first level
// past the limit.
func CheckNesting(raw []byte) error {
	var stack []nestingFrame
	pos := 0
	inHeader := true
	var contentType []byte // the current part's Content-Type, unfolded
	inContentType := false
	for pos < len(raw) {
		end := len(raw)
		if i := bytes.IndexByte(raw[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := bytes.TrimRight(raw[pos:end], "\r\n")
		pos = end
		if inHeader {
			switch {
			case len(line) == 0:
				inHeader, inContentType = false, false
				opened, err := openContainer(contentType, &stack)
				if err != nil {
					return err
				}
				contentType = contentType[:0]
				if opened && stack[len(stack)-1].boundary == "" {
					// message/rfc822: its body is a message, header first.
					inHeader = true
				}
			case line[0] == ' ' || line[0] == '\t':
				if inContentType && len(contentType)+len(line) <= maxHeaderScan {
					contentType = append(contentType, line...)
				}
			default:
				inContentType = false
				name, value, ok := bytes.Cut(line, []byte(":"))
				if ok && strings.EqualFold(string(bytes.TrimRight(name, " \t")), "Content-Type") {
					inContentType = true
					contentType = append(contentType[:0], value[:min(len(value), maxHeaderScan)]...)
				}
			}
			continue
		}
		if len(line) < 3 || line[0] != '-' || line[1] != '-' {
			continue
		}
		// A boundary line closes every container inside the multipart
		// it belongs to, as a MIME parser reading the outer part would.
		for i := len(stack) - 1; i >= 0; i-- {
			b := stack[i].boundary
			if b == "" || !isBoundaryLine(line[2:], b) {
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

// openContainer pushes a frame when contentType names a multipart (with a
// boundary) or an encapsulated message, and reports whether it did. The
// part that opens it sits inside len(*stack) containers; its children one
// more, which is what is checked against MaxNesting.
func openContainer(contentType []byte, stack *[]nestingFrame) (bool, error) {
	if len(contentType) == 0 {
		return false, nil
	}
	mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(string(contentType)))
	if err != nil && mediaType == "" {
		return false, nil
	}
	switch {
	case strings.HasPrefix(mediaType, "multipart/"):
		b := params["boundary"]
		if b == "" {
			return false, nil
		}
		*stack = append(*stack, nestingFrame{boundary: b})
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
