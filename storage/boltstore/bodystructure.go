package boltstore

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// extractBodyStructure gives what imapserver.ExtractBodyStructure gives,
// without reading each part into memory: a part that is not an
// encapsulated message is only counted (octets and lines) as it streams
// by, so a 25 MB attachment costs no 25 MB buffer (go-imap reads every
// part whole). Only message/rfc822 parts are read, as their header must
// be parsed from the part itself. Its cost is linear in len(raw): one
// copy buffer serves every part (io.Copy would allocate 32 KiB per part,
// which for 80,000 empty parts made the garbage collector's work grow
// with the square of the part count).
func extractBodyStructure(raw []byte) imap.BodyStructure {
	br := bufio.NewReader(bytes.NewReader(raw))
	header, _ := textproto.ReadHeader(br)
	w := &bodyWalker{buf: make([]byte, 32<<10)}
	return w.extractPart(header, br)
}

// bodyWalker holds what one extractBodyStructure call shares across parts.
type bodyWalker struct {
	buf []byte // the copy buffer for counting a part's octets and lines
}

func (w *bodyWalker) extractPart(rawHeader textproto.Header, r io.Reader) imap.BodyStructure {
	header := gomessage.Header{Header: rawHeader}
	mediaType, typeParams, _ := header.ContentType()
	primaryType, subType, _ := strings.Cut(mediaType, "/")

	if primaryType == "multipart" {
		bs := &imap.BodyStructureMultiPart{Subtype: subType}
		mr := textproto.NewMultipartReader(r, typeParams["boundary"])
		for {
			part, _ := mr.NextPart()
			if part == nil {
				break
			}
			bs.Children = append(bs.Children, w.extractPart(part.Header, part))
		}
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      typeParams,
			Disposition: contentDisposition(header),
			Language:    contentLanguage(header),
			Location:    header.Get("Content-Location"),
		}
		return bs
	}
	bs := &imap.BodyStructureSinglePart{
		Type:        primaryType,
		Subtype:     subType,
		Params:      typeParams,
		ID:          header.Get("Content-Id"),
		Description: header.Get("Content-Description"),
		Encoding:    header.Get("Content-Transfer-Encoding"),
	}
	var size, lines int64
	if mediaType == "message/rfc822" || mediaType == "message/global" {
		body, _ := io.ReadAll(r)
		size, lines = int64(len(body)), int64(bytes.Count(body, []byte("\n")))
		br := bufio.NewReader(bytes.NewReader(body))
		childHeader, _ := textproto.ReadHeader(br)
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      imapserver.ExtractEnvelope(childHeader),
			BodyStructure: w.extractPart(childHeader, br),
			NumLines:      lines,
		}
	} else {
		var c lineCounter
		_, _ = io.CopyBuffer(&c, r, w.buf)
		size, lines = c.size, c.lines
	}
	bs.Size = uint32(size)
	if primaryType == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: lines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: contentDisposition(header),
		Language:    contentLanguage(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

// lineCounter counts the octets and LFs written to it.
type lineCounter struct{ size, lines int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.size += int64(len(p))
	c.lines += int64(bytes.Count(p, []byte("\n")))
	return len(p), nil
}

func contentDisposition(header gomessage.Header) *imap.BodyStructureDisposition {
	disp, params, _ := header.ContentDisposition()
	if disp == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func contentLanguage(header gomessage.Header) []string {
	v := header.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i, lang := range l {
		l[i] = strings.TrimSpace(lang)
	}
	return l
}
