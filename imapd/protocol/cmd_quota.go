package protocol

import (
	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// QUOTA (RFC 9208) with the STORAGE resource only: GETQUOTA, GETQUOTAROOT,
// and SETQUOTA, which is refused (the limits are the administrator's).
// STORAGE is counted in units of 1024 octets: the usage rounded up, the
// limit rounded down, so a client never thinks there is room there is not.
// A root without a limit answers "()": RFC 9208 4.2.1, resources not
// named in the list are not limited.

// CapQuotaResStorage is the capability of RFC 9208's STORAGE resource.
const CapQuotaResStorage imap.Cap = "QUOTA=RES-STORAGE"

// QuotaData is one quota root's STORAGE resource, in bytes.
type QuotaData struct {
	Root  string
	Used  int64
	Limit int64 // 0: no limit
}

// SessionQuota is implemented by a Session that offers QUOTA (advertised
// when Options.Caps holds imap.CapQuota).
type SessionQuota interface {
	// QuotaRoots returns the quota roots of a mailbox, with their data;
	// an unknown mailbox is an error (NO [NONEXISTENT]).
	QuotaRoots(mailbox string) ([]QuotaData, error)
	// Quota returns one quota root; an unknown one is an error.
	Quota(root string) (*QuotaData, error)
}

func (c *Conn) quotaSession() (SessionQuota, error) {
	q, ok := c.session.(SessionQuota)
	if !ok {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "QUOTA is not offered"}
	}
	return q, nil
}

func (c *Conn) handleGetQuota(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	root, err := d.AString()
	if err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	q, err := c.quotaSession()
	if err != nil {
		return err
	}
	data, err := q.Quota(root)
	if err != nil {
		return err
	}
	return c.respond(func(e *wire.Encoder) { writeQuota(e, data) })
}

func (c *Conn) handleGetQuotaRoot(cmd *command) error {
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	name, err := c.mailbox()
	if err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	q, err := c.quotaSession()
	if err != nil {
		return err
	}
	roots, err := q.QuotaRoots(name)
	if err != nil {
		return err
	}
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("QUOTAROOT ").Mailbox(name)
		for _, r := range roots {
			e.SP().String(r.Root)
		}
		e.CRLF()
		for i := range roots {
			writeQuota(e, &roots[i])
		}
	})
}

func (c *Conn) handleSetQuota(cmd *command) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm,
		Text: "Quotas are set by the administrator in the server's configuration"}
}

func writeQuota(e *wire.Encoder, q *QuotaData) {
	e.Star().Raw("QUOTA ").String(q.Root).Raw(" (")
	if q.Limit > 0 {
		e.Raw("STORAGE ").Number64((q.Used + 1023) / 1024).SP().Number64(q.Limit / 1024)
	}
	e.Raw(")").CRLF()
}
