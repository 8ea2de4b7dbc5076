package protocol

import (
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/wire"
)

// THREAD and UID THREAD (RFC 5256 4): ORDEREDSUBJECT and REFERENCES.

// ThreadNode is one message of a thread and its replies. Num is a sequence
// number or UID; 0 is a dummy (a message that is referred to but not
// there), which only a thread's top can be.
type ThreadNode struct {
	Num      uint32
	Children []ThreadNode
}

// SessionThread is a Session that can THREAD. Thread returns the threads
// of the messages matching criteria, in order, numbered by kind.
type SessionThread interface {
	Thread(kind NumKind, alg imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]ThreadNode, error)
}

func (c *Conn) handleThread(cmd *command) error {
	sess, ok := c.session.(SessionThread)
	if !ok {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "THREAD is not supported"}
	}
	d := c.dec
	if err := d.SP(); err != nil {
		return err
	}
	name, err := d.Atom()
	if err != nil {
		return err
	}
	alg := imap.ThreadAlgorithm(strings.ToUpper(name))
	if !c.srv.opts.Caps.Has(imap.Cap("THREAD=" + string(alg))) {
		return searchError("Unknown threading algorithm " + clip(name))
	}
	criteria, err := c.charsetAndCriteria()
	if err != nil {
		return err
	}
	threads, err := sess.Thread(cmd.kind, alg, criteria)
	if err != nil {
		return err
	}
	return c.respond(func(e *wire.Encoder) {
		e.Star().Raw("THREAD")
		if len(threads) > 0 {
			e.SP()
			for _, t := range threads {
				writeThread(e, t)
			}
		}
		e.CRLF()
	})
}

// writeThread writes one thread-list (RFC 5256 5): a chain of single
// replies as "(a b c)", a message with several replies as "(a (b)(c))", a
// dummy as nothing but its replies.
func writeThread(e *wire.Encoder, n ThreadNode) {
	e.Byte('(')
	first := true
	for {
		if n.Num != 0 {
			if !first {
				e.SP()
			}
			e.Number(n.Num)
			first = false
		}
		if len(n.Children) != 1 {
			break
		}
		n = n.Children[0]
	}
	if len(n.Children) > 1 {
		if !first {
			e.SP()
		}
		for _, ch := range n.Children {
			writeThread(e, ch)
		}
	}
	e.Byte(')')
}
