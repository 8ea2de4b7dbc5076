package boltstore

// What another backend (storage/pgstore) shares with this one so that a
// message is validated, parsed and encoded the same way everywhere: the
// intake checks and parse of a new message, the "parsed" record (envelope
// and body structure), and the flags' canonical form and STORE semantics.

import (
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/storage"
)

// PreparedMessage is a new message checked and parsed before its
// transaction: canonical flags, internal date (now when m has none), the
// encoded parsed record and its Message-ID (without angle brackets; ""
// when it has none).
type PreparedMessage struct {
	Raw          []byte
	Flags        []imap.Flag
	InternalDate time.Time
	Parsed       []byte
	MessageID    string
}

// Size implements storage.PreparedMessage.
func (p *PreparedMessage) Size() int { return len(p.Raw) }

// PrepareMessage validates and parses m as Append does (ErrInvalid for a
// bad flag, a too deep MIME structure or a too large message).
func PrepareMessage(m *storage.NewMessage, now time.Time) (*PreparedMessage, error) {
	p, err := prepare(m, now)
	if err != nil {
		return nil, err
	}
	meta, err := decodeMeta(p.meta)
	if err != nil {
		return nil, err
	}
	return &PreparedMessage{Raw: p.raw, Flags: p.flags.list(), InternalDate: meta.internalDate, Parsed: p.parsed, MessageID: p.messageID()}, nil
}

// DecodeParsed decodes a parsed record (what PreparedMessage.Parsed holds).
func DecodeParsed(b []byte, wantEnv, wantBS bool) (*envelope.Envelope, imap.BodyStructure, error) {
	return decodeParsed(b, wantEnv, wantBS)
}

// CanonicalFlags checks flags given by a client and returns them in
// canonical form (system flags first in a fixed order, keywords
// deduplicated; \Recent dropped).
func CanonicalFlags(flags []imap.Flag) ([]imap.Flag, error) {
	f, err := parseFlags(flags)
	if err != nil {
		return nil, err
	}
	return f.list(), nil
}

// ApplyFlags returns the canonical flags cur changed by a STORE of op with
// arg, and whether they differ from cur.
func ApplyFlags(cur []imap.Flag, op imap.StoreFlagsOp, arg []imap.Flag) ([]imap.Flag, bool, error) {
	c, err := parseFlags(cur)
	if err != nil {
		return nil, false, err
	}
	a, err := parseFlags(arg)
	if err != nil {
		return nil, false, err
	}
	out, err := applyFlags(c, op, a)
	if err != nil {
		return nil, false, err
	}
	return out.list(), !out.equal(c), nil
}
