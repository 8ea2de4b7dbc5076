package protocol

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// FETCH and UID FETCH (RFC 9051 6.4.5, BINARY RFC 3516).

func (c *Conn) handleFetch(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	set, err := c.numSet(cmd.kind)
	if err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	options := &imap.FetchOptions{}
	names := fetchNames{obsolete: make(map[*imap.FetchItemBodySection]string)}
	b, err := d.Peek()
	if err != nil {
		return err
	}
	if b == '(' {
		err = d.List(func() error {
			name, err := c.fetchAttName()
			if err != nil {
				return err
			}
			switch name {
			case "ALL", "FAST", "FULL":
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: name + " is a macro and cannot be in a list"}
			}
			return c.fetchAtt(name, options, &names)
		})
	} else {
		var name string
		if name, err = c.fetchAttName(); err == nil {
			switch name {
			case "ALL", "FAST", "FULL":
				options.Flags, options.InternalDate, options.RFC822Size = true, true, true
				options.Envelope = name != "FAST"
				if name == "FULL" {
					options.BodyStructure = &imap.FetchItemBodyStructure{}
					names.body = true
				}
			default:
				err = c.fetchAtt(name, options, &names)
			}
		}
	}
	if err != nil {
		return err
	}
	w := &FetchWriter{conn: c, names: names, batch: true}
	if err := c.fetchModifiers(cmd, options, w); err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	if cmd.kind == NumKindUID {
		options.UID = true
	}
	if options.ModSeq {
		c.condStoreOn()
	}
	return c.session.Fetch(w, set, options)
}

// numSet reads a sequence set, or a UID set for the UID commands.
func (c *Conn) numSet(kind NumKind) (imap.NumSet, error) {
	if kind == NumKindUID {
		return c.dec.UIDSet()
	}
	return c.dec.SeqSet()
}

func isFetchAttChar(b byte) bool {
	return b > ' ' && b < 0x7f && !strings.ContainsRune(`(){%*"\][<`, rune(b))
}

func (c *Conn) fetchAttName() (string, error) {
	var name []byte
	for {
		b, err := c.dec.Peek()
		if err != nil {
			return "", err
		}
		if !isFetchAttChar(b) {
			break
		}
		c.dec.Accept(b)
		name = append(name, b)
	}
	if len(name) == 0 {
		return "", &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Expected a FETCH item"}
	}
	return strings.ToUpper(string(name)), nil
}

func (c *Conn) fetchAtt(name string, o *imap.FetchOptions, names *fetchNames) error {
	d := c.dec
	switch name {
	case "BODYSTRUCTURE":
		o.BodyStructure = &imap.FetchItemBodyStructure{Extended: true}
		names.bodyStructure = true
	case "ENVELOPE":
		o.Envelope = true
	case "FLAGS":
		o.Flags = true
	case "INTERNALDATE":
		o.InternalDate = true
	case "RFC822.SIZE":
		o.RFC822Size = true
	case "UID":
		o.UID = true
	case "MODSEQ":
		if !c.condStoreOffered() {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown FETCH item " + clip(name)}
		}
		o.ModSeq = true
	case "RFC822", "RFC822.PEEK", "RFC822.HEADER", "RFC822.TEXT":
		bs := &imap.FetchItemBodySection{}
		switch name {
		case "RFC822.PEEK":
			bs.Peek = true
		case "RFC822.HEADER":
			bs.Specifier, bs.Peek = imap.PartSpecifierHeader, true
		case "RFC822.TEXT":
			bs.Specifier = imap.PartSpecifierText
		}
		names.obsolete[bs] = name
		if name == "RFC822.PEEK" {
			names.obsolete[bs] = "RFC822"
		}
		o.BodySection = append(o.BodySection, bs)
	case "BODY", "BODY.PEEK":
		open, err := d.Accept('[')
		if err != nil {
			return err
		}
		if !open {
			if name == "BODY.PEEK" {
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "BODY.PEEK needs a section"}
			}
			if o.BodyStructure == nil {
				o.BodyStructure = &imap.FetchItemBodyStructure{}
			}
			names.body = true
			return nil
		}
		bs := &imap.FetchItemBodySection{Peek: name == "BODY.PEEK"}
		if err := c.section(bs); err != nil {
			return err
		}
		if bs.Partial, err = c.partial(); err != nil {
			return err
		}
		o.BodySection = append(o.BodySection, bs)
	case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		if err := d.Expect('[', "[ after "+name); err != nil {
			return err
		}
		part, err := c.sectionPart()
		if err != nil {
			return err
		}
		if err := d.Expect(']', "] after the part number"); err != nil {
			return err
		}
		if name == "BINARY.SIZE" {
			o.BinarySectionSize = append(o.BinarySectionSize, &imap.FetchItemBinarySectionSize{Part: part})
			return nil
		}
		bs := &imap.FetchItemBinarySection{Part: part, Peek: name == "BINARY.PEEK"}
		if bs.Partial, err = c.partial(); err != nil {
			return err
		}
		o.BinarySection = append(o.BinarySection, bs)
	default:
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown FETCH item " + clip(name)}
	}
	return nil
}

// sectionPart reads "1.2.3" (possibly nothing), stopping before a
// specifier's dot.
func (c *Conn) sectionPart() ([]int, error) {
	d := c.dec
	var part []int
	for {
		b, err := d.Peek()
		if err != nil {
			return nil, err
		}
		if b < '0' || b > '9' {
			return part, nil
		}
		n, err := d.NZNumber()
		if err != nil {
			return nil, err
		}
		part = append(part, int(n))
		b, err = d.Peek()
		if err != nil {
			return nil, err
		}
		if b != '.' {
			return part, nil
		}
		d.Accept('.')
		if b, err = d.Peek(); err != nil {
			return nil, err
		}
		if b < '0' || b > '9' {
			return part, nil // a specifier follows: 1.HEADER
		}
	}
}

// section reads the inside of BODY[...] and the closing bracket.
func (c *Conn) section(bs *imap.FetchItemBodySection) error {
	d := c.dec
	var err error
	if bs.Part, err = c.sectionPart(); err != nil {
		return err
	}
	if closed, err := d.Accept(']'); closed || err != nil {
		return err
	}
	spec, err := d.Atom()
	if err != nil {
		return err
	}
	switch s := strings.ToUpper(spec); s {
	case "HEADER", "TEXT":
		bs.Specifier = imap.PartSpecifier(s)
	case "MIME":
		if len(bs.Part) == 0 {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "MIME needs a part number"}
		}
		bs.Specifier = imap.PartSpecifierMIME
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		if err := d.SP(); err != nil {
			return err
		}
		var fields []string
		err := d.List(func() error {
			f, err := d.AString()
			fields = append(fields, f)
			return err
		})
		if err != nil {
			return err
		}
		if len(fields) == 0 {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: s + " needs at least one field name"}
		}
		bs.Specifier = imap.PartSpecifierHeader
		if s == "HEADER.FIELDS" {
			bs.HeaderFields = fields
		} else {
			bs.HeaderFieldsNot = fields
		}
	default:
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown section " + clip(spec)}
	}
	return d.Expect(']', "] after the section")
}

// partial reads "<offset.size>" if present.
func (c *Conn) partial() (*imap.SectionPartial, error) {
	d := c.dec
	if open, err := d.Accept('<'); !open || err != nil {
		return nil, err
	}
	off, err := d.Number()
	if err != nil {
		return nil, err
	}
	if err := d.Expect('.', ". in <offset.size>"); err != nil {
		return nil, err
	}
	size, err := d.NZNumber()
	if err != nil {
		return nil, err
	}
	if err := d.Expect('>', "> after <offset.size>"); err != nil {
		return nil, err
	}
	return &imap.SectionPartial{Offset: int64(off), Size: int64(size)}, nil
}
