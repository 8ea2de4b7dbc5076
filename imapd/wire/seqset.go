package wire

import "github.com/emersion/go-imap/v2"

// seqRanges reads sequence-set (RFC 9051 9) as ranges with 0 standing for
// "*", or reports "$" (RFC 5182 SEARCHRES). A 0 in the set is a syntax
// error: sequence numbers and UIDs start at 1.
func (d *Decoder) seqRanges() (ranges [][2]uint32, searchRes bool, err error) {
	if ok, err := d.Accept('$'); ok || err != nil {
		return nil, ok, err
	}
	for {
		start, err := d.seqNumber()
		if err != nil {
			return nil, false, err
		}
		stop := start
		colon, err := d.Accept(':')
		if err != nil {
			return nil, false, err
		}
		if colon {
			if stop, err = d.seqNumber(); err != nil {
				return nil, false, err
			}
		}
		ranges = append(ranges, [2]uint32{start, stop})
		comma, err := d.Accept(',')
		if err != nil {
			return nil, false, err
		}
		if !comma {
			return ranges, false, nil
		}
	}
}

// seqNumber reads nz-number or "*" (as 0).
func (d *Decoder) seqNumber() (uint32, error) {
	if ok, err := d.Accept('*'); ok || err != nil {
		return 0, err
	}
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if !isDigit(c) {
		return 0, syntaxError("Expected a sequence set")
	}
	n, err := d.Number()
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, syntaxError("Invalid sequence set: 0 is not a message number (they start at 1)")
	}
	return n, nil
}

// SeqSet reads a set of message sequence numbers. "$" is returned as
// imap.SearchRes(), the saved result, which the caller resolves.
func (d *Decoder) SeqSet() (imap.NumSet, error) {
	ranges, res, err := d.seqRanges()
	if err != nil {
		return nil, err
	}
	if res {
		return imap.SearchRes(), nil
	}
	var set imap.SeqSet
	for _, r := range ranges {
		set.AddRange(r[0], r[1])
	}
	return set, nil
}

// UIDSet reads a set of UIDs; "$" is returned as imap.SearchRes().
func (d *Decoder) UIDSet() (imap.UIDSet, error) {
	ranges, res, err := d.seqRanges()
	if err != nil {
		return nil, err
	}
	if res {
		return imap.SearchRes(), nil
	}
	var set imap.UIDSet
	for _, r := range ranges {
		set.AddRange(imap.UID(r[0]), imap.UID(r[1]))
	}
	return set, nil
}
