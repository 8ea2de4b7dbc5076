package protocol

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// LIST (RFC 9051 6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819) and
// LSUB (RFC 3501 6.3.9).

func (c *Conn) handleList(cmd *command) error {
	d := c.dec
	lsub := cmd.name == "LSUB"
	options := &imap.ListOptions{}
	if err := d.SP(); err != nil {
		return err
	}
	if b, err := d.Peek(); err != nil {
		return err
	} else if b == '(' && !lsub {
		err := d.List(func() error {
			opt, err := d.AString()
			if err != nil {
				return err
			}
			switch strings.ToUpper(opt) {
			case "SUBSCRIBED":
				options.SelectSubscribed = true
			case "REMOTE":
				options.SelectRemote = true
			case "RECURSIVEMATCH":
				options.SelectRecursiveMatch = true
			case "SPECIAL-USE":
				options.SelectSpecialUse = true
			default:
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown LIST selection option " + clip(opt)}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	ref, err := c.mailbox()
	if err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	var patterns []string
	unmatchable := 0 // patterns that are not valid modified UTF-7
	pattern := func() error {
		p, err := d.ListMailbox()
		if err != nil {
			return err
		}
		if p, err = c.decodePattern(p); err != nil {
			// No mailbox name is invalid modified UTF-7, so such a
			// pattern matches nothing (imaptest atoms: LIST is OK).
			unmatchable++
			return nil
		}
		if p != "" {
			patterns = append(patterns, p)
		}
		return nil
	}
	if b, err := d.Peek(); err != nil {
		return err
	} else if b == '(' && !lsub {
		if err := d.List(pattern); err != nil {
			return err
		}
		if len(patterns) == 0 && unmatchable == 0 {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "LIST needs at least one pattern in the list"}
		}
	} else if err := pattern(); err != nil {
		return err
	}
	if end, err := d.AtEnd(); err != nil {
		return err
	} else if !end && !lsub {
		if err := d.SP(); err != nil {
			return err
		}
		ret, err := d.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(ret, "RETURN") {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Expected RETURN"}
		}
		if err := d.SP(); err != nil {
			return err
		}
		if err := c.listReturn(options); err != nil {
			return err
		}
	}
	if err := d.End(); err != nil {
		return err
	}
	if options.SelectRecursiveMatch && !options.SelectSubscribed {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "RECURSIVEMATCH needs SUBSCRIBED (RFC 5258 3.1)"}
	}
	if lsub {
		options.SelectSubscribed = true
	}
	if len(patterns) == 0 && unmatchable > 0 {
		return nil
	}
	return c.session.List(&ListWriter{conn: c, options: options, lsub: lsub}, ref, patterns, options)
}

func (c *Conn) listReturn(options *imap.ListOptions) error {
	d := c.dec
	return d.List(func() error {
		opt, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(opt) {
		case "SUBSCRIBED":
			options.ReturnSubscribed = true
		case "CHILDREN":
			options.ReturnChildren = true
		case "SPECIAL-USE":
			options.ReturnSpecialUse = true
		case "STATUS":
			if err := d.SP(); err != nil {
				return err
			}
			options.ReturnStatus = &imap.StatusOptions{}
			return c.statusItems(options.ReturnStatus)
		default:
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown LIST return option " + clip(opt)}
		}
		return nil
	})
}

// decodePattern decodes a LIST pattern like a mailbox name; the wildcards
// are printable ASCII and survive modified UTF-7 unchanged.
func (c *Conn) decodePattern(p string) (string, error) {
	if strings.EqualFold(p, "INBOX") {
		return p, nil
	}
	return c.decodeMailbox(p)
}

// MatchList reports whether the mailbox name matches the LIST reference
// and pattern (RFC 9051 6.3.9): "*" matches anything, "%" anything but the
// hierarchy delimiter. It takes time proportional to the product of the
// lengths, whatever the pattern.
func MatchList(name string, delim rune, ref, pattern string) bool {
	d := string(delim)
	if delim != 0 && strings.HasPrefix(pattern, d) {
		ref, pattern = "", pattern[len(d):]
	}
	if ref != "" && delim != 0 && !strings.HasSuffix(ref, d) {
		ref += d
	}
	return matchWildcards(name, ref+pattern, delim)
}

// matchWildcards matches by dynamic programming over the pattern: ok[j]
// says whether the first j bytes of the name can be matched so far.
func matchWildcards(name, pattern string, delim rune) bool {
	ok := make([]bool, len(name)+1)
	ok[0] = true
	for i := 0; i < len(pattern); i++ {
		p := pattern[i]
		switch p {
		case '*', '%':
			// ok[j] becomes true if some k <= j is true and name[k:j]
			// holds no delimiter (for %).
			reach := false
			for j := 0; j <= len(name); j++ {
				if ok[j] {
					reach = true
				}
				ok[j] = reach
				if p == '%' && j < len(name) && delim != 0 && rune(name[j]) == delim {
					reach = false
				}
			}
		default:
			for j := len(name); j >= 1; j-- {
				ok[j] = ok[j-1] && name[j-1] == p
			}
			ok[0] = false
		}
	}
	return ok[len(name)]
}
