package envelope

import (
	"time"

	"github.com/emersion/go-imap/v2"
)

// Envelope is a message's ENVELOPE (RFC 9051 7.5.2), as stored beside the
// message. It is go-imap's imap.Envelope with pochta's Address, which keeps
// the source route.
type Envelope struct {
	Date      time.Time
	Subject   string
	From      []Address
	Sender    []Address
	ReplyTo   []Address
	To        []Address
	Cc        []Address
	Bcc       []Address
	InReplyTo []string // message IDs without angle brackets
	MessageID string   // without angle brackets
}

// Address is one address of an envelope (RFC 3501 7.4.2 "address"): the
// display name, the source route (ADL, "@relay.example" or
// "@a.example,@b.example" from the obsolete <@route:user@host> form of RFC
// 5322 4.4; "" nearly always), the local part and the domain. A group is a
// start marker (Mailbox the group's name, no Host) before its members and
// an end marker (all empty) after them.
type Address struct {
	Name    string
	Mailbox string
	Host    string
	ADL     string
}

// Addr is the address as "user@host", or "" for a group marker.
func (a *Address) Addr() string {
	if a.Mailbox == "" || a.Host == "" {
		return ""
	}
	return a.Mailbox + "@" + a.Host
}

// IsGroupStart reports whether a starts a group (Mailbox is its name).
func (a *Address) IsGroupStart() bool { return a.Host == "" && a.Mailbox != "" }

// IsGroupEnd reports whether a ends a group.
func (a *Address) IsGroupEnd() bool { return a.Host == "" && a.Mailbox == "" }

// FromIMAP converts go-imap's envelope (no source routes); nil gives nil.
func FromIMAP(env *imap.Envelope) *Envelope {
	if env == nil {
		return nil
	}
	conv := func(l []imap.Address) []Address {
		if l == nil {
			return nil
		}
		out := make([]Address, len(l))
		for i, a := range l {
			out[i] = Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
		}
		return out
	}
	return &Envelope{
		Date: env.Date, Subject: env.Subject,
		From: conv(env.From), Sender: conv(env.Sender), ReplyTo: conv(env.ReplyTo),
		To: conv(env.To), Cc: conv(env.Cc), Bcc: conv(env.Bcc),
		InReplyTo: env.InReplyTo, MessageID: env.MessageID,
	}
}

// IMAP converts to go-imap's envelope, dropping source routes; nil gives
// nil.
func (env *Envelope) IMAP() *imap.Envelope {
	if env == nil {
		return nil
	}
	conv := func(l []Address) []imap.Address {
		if l == nil {
			return nil
		}
		out := make([]imap.Address, len(l))
		for i, a := range l {
			out[i] = imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
		}
		return out
	}
	return &imap.Envelope{
		Date: env.Date, Subject: env.Subject,
		From: conv(env.From), Sender: conv(env.Sender), ReplyTo: conv(env.ReplyTo),
		To: conv(env.To), Cc: conv(env.Cc), Bcc: conv(env.Bcc),
		InReplyTo: env.InReplyTo, MessageID: env.MessageID,
	}
}

// Lists returns the six address lists in ENVELOPE order: from, sender,
// reply-to, to, cc, bcc.
func (env *Envelope) Lists() [6][]Address {
	return [6][]Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc}
}
