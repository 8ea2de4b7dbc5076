package protocol

import (
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// SORT and UID SORT (RFC 5256 3), with SORT RETURN (...) answered by
// ESEARCH when ESORT is on offer (RFC 5267 3), and the DISPLAYFROM and
// DISPLAYTO keys when SORT=DISPLAY is (RFC 5957).

// SortKey is a SORT key (RFC 5256 3, RFC 5957 2).
type SortKey string

// The sort keys.
const (
	SortArrival     SortKey = "ARRIVAL"
	SortCc          SortKey = "CC"
	SortDate        SortKey = "DATE"
	SortFrom        SortKey = "FROM"
	SortSize        SortKey = "SIZE"
	SortSubject     SortKey = "SUBJECT"
	SortTo          SortKey = "TO"
	SortDisplayFrom SortKey = "DISPLAYFROM"
	SortDisplayTo   SortKey = "DISPLAYTO"
)

// maxSortKeys bounds the sort criteria of one command.
const maxSortKeys = 32

// SortCriterion is one sort key, ascending unless Reverse.
type SortCriterion struct {
	Key     SortKey
	Reverse bool
}

// SessionSort is a Session that can SORT. Sort returns the sequence
// numbers (NumKindSeq) or UIDs of the messages matching criteria, in the
// order of keys; messages equal on every key are in mailbox order.
type SessionSort interface {
	Sort(kind NumKind, keys []SortCriterion, criteria *imap.SearchCriteria) ([]uint32, error)
}

func (c *Conn) handleSort(cmd *command) error {
	sess, ok := c.session.(SessionSort)
	if !ok {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "SORT is not supported"}
	}
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	var ret *imap.SearchOptions
	if b, err := d.Peek(); err != nil {
		return err
	} else if (b == 'R' || b == 'r') && c.srv.opts.Caps.Has(imap.CapESort) {
		word, err := d.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(word, "RETURN") {
			return searchError("Expected RETURN or the sort criteria")
		}
		if ret, err = c.searchReturn(); err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
	}
	var keys []SortCriterion
	err := d.List(func() error {
		if len(keys) == maxSortKeys {
			return searchError("Too many sort keys")
		}
		word, err := d.Atom()
		if err != nil {
			return err
		}
		var k SortCriterion
		if strings.EqualFold(word, "REVERSE") {
			k.Reverse = true
			if err := d.SP(); err != nil {
				return err
			}
			if word, err = d.Atom(); err != nil {
				return err
			}
		}
		k.Key = SortKey(strings.ToUpper(word))
		switch k.Key {
		case SortArrival, SortCc, SortDate, SortFrom, SortSize, SortSubject, SortTo:
		case SortDisplayFrom, SortDisplayTo:
			if !c.srv.opts.Caps.Has(imap.CapSortDisplay) {
				return searchError("Unknown sort key " + clip(word))
			}
		default:
			return searchError("Unknown sort key " + clip(word))
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return searchError("SORT needs at least one sort key")
	}
	criteria, err := c.charsetAndCriteria()
	if err != nil {
		return err
	}
	nums, err := sess.Sort(cmd.kind, keys, criteria)
	if err != nil {
		return err
	}
	if ret != nil {
		return c.respond(func(e *wire.Encoder) { writeESort(e, cmd, ret, nums) })
	}
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("SORT")
		for _, n := range nums {
			e.SP().Number(n)
		}
		e.CRLF()
	})
}

// searchReturn reads the "(...)" of RETURN for SORT: MIN, MAX, ALL and
// COUNT (RFC 5267 3.1); RETURN () means ALL.
func (c *Conn) searchReturn() (*imap.SearchOptions, error) {
	d := c.dec
	if err := d.SP(); err != nil {
		return nil, err
	}
	opts := &imap.SearchOptions{}
	err := d.List(func() error {
		opt, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(opt) {
		case "MIN":
			opts.ReturnMin = true
		case "MAX":
			opts.ReturnMax = true
		case "ALL":
			opts.ReturnAll = true
		case "COUNT":
			opts.ReturnCount = true
		default:
			return searchError("Unknown SORT RETURN option " + clip(opt))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !opts.ReturnMin && !opts.ReturnMax && !opts.ReturnCount {
		opts.ReturnAll = true
	}
	return opts, nil
}

// writeESort writes the ESEARCH answer of SORT RETURN: MIN and MAX are the
// first and last in sort order, ALL is a sequence-set in sort order (RFC
// 5267 3.2).
func writeESort(e *wire.Encoder, cmd *command, ret *imap.SearchOptions, nums []uint32) {
	e.Star().Raw("ESEARCH (TAG ").String(cmd.tag).Byte(')')
	if cmd.kind == NumKindUID {
		e.Raw(" UID")
	}
	if len(nums) > 0 {
		if ret.ReturnMin {
			e.Raw(" MIN ").Number(nums[0])
		}
		if ret.ReturnMax {
			e.Raw(" MAX ").Number(nums[len(nums)-1])
		}
		if ret.ReturnAll {
			e.Raw(" ALL ").Raw(orderedSet(nums))
		}
	}
	if ret.ReturnCount {
		e.Raw(" COUNT ").Number(uint32(len(nums)))
	}
	e.CRLF()
}

// orderedSet writes nums as a sequence-set that keeps their order: runs of
// consecutive ascending numbers become "a:b".
func orderedSet(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// charsetAndCriteria reads the SP charset SP search-key... that end SORT
// and THREAD (RFC 5256 5); the charset is required, and must be US-ASCII
// or UTF-8.
func (c *Conn) charsetAndCriteria() (*imap.SearchCriteria, error) {
	d := c.dec
	if err := d.SP(); err != nil {
		return nil, err
	}
	charset, err := d.AString()
	if err != nil {
		return nil, err
	}
	switch strings.ToUpper(charset) {
	case "US-ASCII", "UTF-8":
	default:
		// Read the criteria first: a NO is only for a well-formed command.
		if _, err := c.searchCriteria(); err != nil {
			return nil, err
		}
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: "BADCHARSET (US-ASCII UTF-8)",
			Text: "Only US-ASCII and UTF-8 are supported"}
	}
	return c.searchCriteria()
}

// searchCriteria reads SP search-key *(SP search-key) up to the end of the
// command.
func (c *Conn) searchCriteria() (*imap.SearchCriteria, error) {
	d := c.dec
	var criteria imap.SearchCriteria
	for {
		if err := d.SP(); err != nil {
			return nil, err
		}
		key, err := c.searchAtom()
		if err != nil {
			return nil, err
		}
		if err := c.searchKey(&criteria, key, 0); err != nil {
			return nil, err
		}
		end, err := d.AtEnd()
		if err != nil {
			return nil, err
		}
		if end {
			break
		}
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	return &criteria, nil
}
