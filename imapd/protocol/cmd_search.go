package protocol

import (
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// SEARCH and UID SEARCH (RFC 9051 6.4.4, ESEARCH RFC 4731, SEARCHRES RFC
// 5182).

// maxSearchDepth bounds the nesting of NOT, OR and parentheses.
const maxSearchDepth = 64

var flagRecent = imap.Flag(`\Recent`)

func (c *Conn) handleSearch(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	var options imap.SearchOptions
	extended := false
	key, err := c.searchAtom()
	if err != nil {
		return err
	}
	if strings.EqualFold(key, "RETURN") {
		extended = true
		if err := d.SP(); err != nil {
			return err
		}
		err := d.List(func() error {
			opt, err := d.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(opt) {
			case "MIN":
				options.ReturnMin = true
			case "MAX":
				options.ReturnMax = true
			case "ALL":
				options.ReturnAll = true
			case "COUNT":
				options.ReturnCount = true
			case "SAVE":
				options.ReturnSave = true
			default:
				return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown SEARCH RETURN option " + clip(opt)}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
		if key, err = c.searchAtom(); err != nil {
			return err
		}
	}
	if strings.EqualFold(key, "CHARSET") {
		if err := d.SP(); err != nil {
			return err
		}
		charset, err := d.AString()
		if err != nil {
			return err
		}
		switch strings.ToUpper(charset) {
		case "US-ASCII", "UTF-8":
		default:
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "BADCHARSET (US-ASCII UTF-8)",
				Text: "Only US-ASCII and UTF-8 searches are supported"}
		}
		if err := d.SP(); err != nil {
			return err
		}
		if key, err = c.searchAtom(); err != nil {
			return err
		}
	}
	var criteria imap.SearchCriteria
	for {
		if err := c.searchKey(&criteria, key, 0); err != nil {
			return err
		}
		end, err := d.AtEnd()
		if err != nil {
			return err
		}
		if end {
			break
		}
		if err := d.SP(); err != nil {
			return err
		}
		if key, err = c.searchAtom(); err != nil {
			return err
		}
	}
	if err := d.End(); err != nil {
		return err
	}
	onlySave := options.ReturnSave && !options.ReturnMin && !options.ReturnMax && !options.ReturnAll && !options.ReturnCount
	if !options.ReturnMin && !options.ReturnMax && !options.ReturnCount {
		options.ReturnAll = true
	}
	data, err := c.session.Search(cmd.kind, &criteria, &options)
	if err != nil {
		return err
	}
	if onlySave && extended {
		// RFC 5182 2.1: RETURN (SAVE) alone gives no ESEARCH response.
		return nil
	}
	if extended || c.EnabledCaps().Has(imap.CapIMAP4rev2) {
		return c.respond(func(e *wire.Encoder) {
			e.Star().Raw("ESEARCH (TAG ").String(cmd.tag).Byte(')')
			if cmd.kind == NumKindUID {
				e.Raw(" UID")
			}
			if options.ReturnAll && data.All != nil && !emptySet(data.All) {
				e.Raw(" ALL ").NumSet(data.All)
			}
			if options.ReturnMin && data.Min > 0 {
				e.Raw(" MIN ").Number(data.Min)
			}
			if options.ReturnMax && data.Max > 0 {
				e.Raw(" MAX ").Number(data.Max)
			}
			if options.ReturnCount {
				e.Raw(" COUNT ").Number(data.Count)
			}
			if data.ModSeq > 0 {
				e.Raw(" MODSEQ ").Number64(int64(data.ModSeq))
			}
			e.CRLF()
		})
	}
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("SEARCH")
		switch set := data.All.(type) {
		case imap.SeqSet:
			for _, r := range set {
				for n := r.Start; n <= r.Stop && n != 0; n++ {
					e.SP().Number(n)
				}
			}
		case imap.UIDSet:
			for _, r := range set {
				for n := r.Start; n <= r.Stop && n != 0; n++ {
					e.SP().Number(uint32(n))
				}
			}
		}
		if data.ModSeq > 0 && !emptySet(data.All) {
			// RFC 7162 3.1.5.
			e.Raw(" (MODSEQ ").Number64(int64(data.ModSeq)).Byte(')')
		}
		e.CRLF()
	})
}

func emptySet(s imap.NumSet) bool {
	switch s := s.(type) {
	case imap.SeqSet:
		return len(s) == 0
	case imap.UIDSet:
		return len(s) == 0
	}
	return true
}

// searchAtom reads the next search key's name, a sequence set, or "(".
func (c *Conn) searchAtom() (string, error) {
	d := c.dec
	b, err := d.Peek()
	if err != nil {
		return "", err
	}
	if b == '(' {
		return "(", nil
	}
	if b == '*' || b == '$' || (b >= '0' && b <= '9') {
		return "", nil // a sequence set, read by searchKey
	}
	return d.Atom()
}

func searchError(text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Text: text}
}

// searchKey reads one search key whose name (or "(", or "" for a
// sequence set) was read as key, and adds it to cr.
func (c *Conn) searchKey(cr *imap.SearchCriteria, key string, depth int) error {
	d := c.dec
	if depth > maxSearchDepth {
		return searchError("SEARCH nested too deeply")
	}
	next := func() (string, error) {
		if err := d.SP(); err != nil {
			return "", err
		}
		return c.searchAtom()
	}
	str := func() (string, error) {
		if err := d.SP(); err != nil {
			return "", err
		}
		return d.AString()
	}
	date := func() (time.Time, error) {
		if err := d.SP(); err != nil {
			return time.Time{}, err
		}
		return d.Date()
	}
	switch key {
	case "":
		set, err := d.SeqSet()
		if err != nil {
			return err
		}
		if imap.IsSearchRes(set) {
			cr.UID = append(cr.UID, imap.SearchRes())
		} else {
			cr.SeqNum = append(cr.SeqNum, set.(imap.SeqSet))
		}
		return nil
	case "(":
		return d.List(func() error {
			k, err := c.searchAtom()
			if err != nil {
				return err
			}
			return c.searchKey(cr, k, depth+1)
		})
	}
	switch k := strings.ToUpper(key); k {
	case "ALL":
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN", "RECENT":
		cr.Flag = append(cr.Flag, imap.Flag(`\`+titleCase(k)))
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		cr.NotFlag = append(cr.NotFlag, imap.Flag(`\`+titleCase(k[2:])))
	case "NEW":
		cr.Flag = append(cr.Flag, flagRecent)
		cr.NotFlag = append(cr.NotFlag, imap.FlagSeen)
	case "OLD":
		cr.NotFlag = append(cr.NotFlag, flagRecent)
	case "KEYWORD", "UNKEYWORD":
		if err := d.SP(); err != nil {
			return err
		}
		f, err := d.Flag(false)
		if err != nil {
			return err
		}
		if k == "KEYWORD" {
			cr.Flag = append(cr.Flag, f)
		} else {
			cr.NotFlag = append(cr.NotFlag, f)
		}
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		v, err := str()
		if err != nil {
			return err
		}
		cr.Header = append(cr.Header, imap.SearchCriteriaHeaderField{Key: titleCase(k), Value: v})
	case "HEADER":
		name, err := str()
		if err != nil {
			return err
		}
		v, err := str()
		if err != nil {
			return err
		}
		cr.Header = append(cr.Header, imap.SearchCriteriaHeaderField{Key: name, Value: v})
	case "BODY", "TEXT":
		v, err := str()
		if err != nil {
			return err
		}
		if k == "BODY" {
			cr.Body = append(cr.Body, v)
		} else {
			cr.Text = append(cr.Text, v)
		}
	case "SINCE", "BEFORE", "ON", "SENTSINCE", "SENTBEFORE", "SENTON":
		t, err := date()
		if err != nil {
			return err
		}
		var dc imap.SearchCriteria
		switch k {
		case "SINCE":
			dc.Since = t
		case "BEFORE":
			dc.Before = t
		case "ON":
			dc.Since, dc.Before = t, t.Add(24*time.Hour)
		case "SENTSINCE":
			dc.SentSince = t
		case "SENTBEFORE":
			dc.SentBefore = t
		case "SENTON":
			dc.SentSince, dc.SentBefore = t, t.Add(24*time.Hour)
		}
		cr.And(&dc)
	case "LARGER", "SMALLER":
		if err := d.SP(); err != nil {
			return err
		}
		n, err := d.Number64()
		if err != nil {
			return err
		}
		if k == "LARGER" {
			cr.And(&imap.SearchCriteria{Larger: n})
		} else {
			cr.And(&imap.SearchCriteria{Smaller: n})
		}
	case "UID":
		if err := d.SP(); err != nil {
			return err
		}
		set, err := d.UIDSet()
		if err != nil {
			return err
		}
		cr.UID = append(cr.UID, set)
	case "MODSEQ":
		return c.searchModSeq(cr)
	case "NOT":
		sub, err := next()
		if err != nil {
			return err
		}
		var not imap.SearchCriteria
		if err := c.searchKey(&not, sub, depth+1); err != nil {
			return err
		}
		cr.Not = append(cr.Not, not)
	case "OR":
		var or [2]imap.SearchCriteria
		for i := range or {
			sub, err := next()
			if err != nil {
				return err
			}
			if err := c.searchKey(&or[i], sub, depth+1); err != nil {
				return err
			}
		}
		cr.Or = append(cr.Or, or)
	default:
		return searchError("Unknown SEARCH key " + clip(key))
	}
	return nil
}

// titleCase turns "FLAGGED" into "Flagged".
func titleCase(s string) string {
	if s == "" {
		return s
	}
	return s[:1] + strings.ToLower(s[1:])
}
