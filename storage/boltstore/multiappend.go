package boltstore

import (
	"context"
	"fmt"
	"time"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// AppendMany stores msgs in one transaction: every message or none
// (MULTIAPPEND, RFC 3502). Each is prepared as Append prepares one, before
// the transaction. The Sent de-duplication works per message, as for
// Append: a message whose Message-ID the Sent folder already holds (from a
// delivery, or from an earlier message of the same call) is not stored
// again and its entry is the existing copy; that is not a failure, so it
// does not undo the others. The quota is checked once for the bytes of all
// the new messages together.
func (s *boltStore) AppendMany(ctx context.Context, user, mailbox string, msgs []*storage.NewMessage) ([]*storage.Appended, error) {
	if len(msgs) == 0 {
		return nil, fmt.Errorf("storage: append many: no messages: %w", storage.ErrInvalid)
	}
	name, err := storage.NormalizeMailboxName(mailbox)
	if err != nil {
		return nil, fmt.Errorf("storage: append many: %w", err)
	}
	now := time.Now()
	ps := make([]*prepared, len(msgs))
	mids := make([]string, len(msgs))
	size := 0
	for i, msg := range msgs {
		if ps[i], err = prepare(msg, now); err != nil {
			return nil, fmt.Errorf("storage: append many: message %d: %w", i+1, err)
		}
		mids[i] = ps[i].messageID()
		size += len(ps[i].raw)
	}
	res, err := write(s, ctx, size, func(tx *bolt.Tx, ev *eventList) ([]*storage.Appended, error) {
		u, err := openUser(tx, user)
		if err != nil {
			return nil, err
		}
		x, err := u.boxByName(name)
		if err != nil {
			return nil, err
		}
		out := make([]*storage.Appended, len(ps))
		var added int64
		for i, p := range ps {
			if dup, err := x.sentDuplicate(mids[i], now); err != nil {
				return nil, err
			} else if dup != nil {
				out[i] = dup
				continue
			}
			if out[i], err = x.appendPrepared(p, ev); err != nil {
				return nil, fmt.Errorf("message %d: %w", i+1, err)
			}
			added += int64(len(p.raw))
		}
		// The mailbox's stored record does not count the new messages
		// yet (x.save comes last), so this is the usage before them.
		if err := s.checkQuota(u, added); err != nil {
			return nil, err
		}
		return out, x.save()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: append many: %w", err)
	}
	return res, nil
}
