package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

// maxUID is the largest UID (IMAP UIDs are 32-bit).
const maxUID = 1<<32 - 1

// appendPrepared stores p in x under the mailbox's next UID and modseq
// (the UPDATE holds the mailbox's row lock: across nodes, UIDs are unique
// and ascending). With sharedBody set, the row holds the message's header
// and refers to that body (stored once for every copy of a delivery).
// The rules learn the message (MessageStored) and EventAppend is added.
func (x *pgMailbox) appendPrepared(p *boltstore.PreparedMessage, sharedBody int64, now time.Time, ev *storage.Events) (*storage.Appended, error) {
	return x.put(p.Raw, sharedBody, p.Parsed, p.Flags, p.InternalDate, int64(len(p.Raw)), p.MessageID, now, ev)
}

func (x *pgMailbox) put(raw []byte, sharedBody int64, parsed []byte, flags []imap.Flag, date time.Time, size int64, messageID string, now time.Time, ev *storage.Events) (*storage.Appended, error) {
	own := raw
	var shared *int64
	if sharedBody != 0 {
		own = raw[:headerLen(raw)]
		shared = &sharedBody
	}
	seen := slices.Contains(flags, imap.FlagSeen)
	unseen := int64(1)
	if seen {
		unseen = 0
	}
	var uid, modseq int64
	err := x.t.tx.QueryRow(x.t.ctx, `UPDATE mailboxes
		SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
		    messages = messages + 1, unseen = unseen + $2, size = size + $3
		WHERE id = $1 AND uidnext <= $4 RETURNING uidnext - 1, highestmodseq`,
		int64(x.id), unseen, size, int64(maxUID)).Scan(&uid, &modseq)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("mailbox %q: UIDs exhausted: %w", x.name, storage.ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	var mid *string
	if messageID != "" {
		mid = &messageID
	}
	date = date.Truncate(time.Microsecond)
	if _, err := x.t.tx.Exec(x.t.ctx, `INSERT INTO messages
		(mailbox_id, uid, modseq, flags, internal_date, size, own, shared_body_id, parsed, message_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		int64(x.id), uid, modseq, flagStrings(flags), date, size, nonNil(own), shared, nonNil(parsed), mid); err != nil {
		return nil, err
	}
	if err := storage.MessageStored(x.t, x, storage.StoredMessage{UID: imap.UID(uid), MessageID: messageID, InternalDate: date, Seen: seen}, now); err != nil {
		return nil, err
	}
	ev.Add(storage.Event{Kind: storage.EventAppend, User: x.user, MailboxID: x.id, UID: imap.UID(uid), Flags: slices.Clone(flags), ModSeq: uint64(modseq)})
	if err := notifyMailbox(x.t.ctx, x.t.tx, int64(x.id)); err != nil {
		return nil, err
	}
	return &storage.Appended{MailboxID: x.id, UIDValidity: x.uidValidity, UID: imap.UID(uid)}, nil
}

// headerLen is the length of a message's header up to and including the
// empty line that ends it (all of it when no line is empty).
func headerLen(raw []byte) int {
	switch {
	case bytes.HasPrefix(raw, []byte("\n")):
		return 1
	case bytes.HasPrefix(raw, []byte("\r\n")):
		return 2
	}
	n := len(raw)
	if i := bytes.Index(raw, []byte("\n\r\n")); i >= 0 {
		n = i + 3
	}
	if i := bytes.Index(raw[:n], []byte("\n\n")); i >= 0 {
		n = i + 2
	}
	return n
}

// usage is the sum of the sizes of a user's messages.
func usage(ctx context.Context, tx pgx.Tx, addr string) (int64, error) {
	var n int64
	err := tx.QueryRow(ctx, "SELECT coalesce(sum(size), 0)::bigint FROM mailboxes WHERE username = $1", addr).Scan(&n)
	return n, err
}

// checkQuota fails with ErrOverQuota when adding bytes to the user's usage
// would pass the store's quota.
func (s *pgStore) checkQuota(ctx context.Context, tx pgx.Tx, addr string, bytes int64) error {
	if s.opts.Quota <= 0 || bytes <= 0 {
		return nil
	}
	used, err := usage(ctx, tx, addr)
	if err != nil {
		return err
	}
	if used+bytes > s.opts.Quota {
		return fmt.Errorf("%s uses %d of %d bytes, %d more do not fit: %w", addr, used, s.opts.Quota, bytes, storage.ErrOverQuota)
	}
	return nil
}

// Usage implements storage.Backend.
func (s *pgStore) Usage(ctx context.Context, user string) (int64, error) {
	addr := strings.ToLower(user)
	var n int64
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := userExists(ctx, tx, addr); err != nil {
			return err
		}
		var err error
		n, err = usage(ctx, tx, addr)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storage: usage: %w", err)
	}
	return n, nil
}

// Append implements storage.Backend.
func (s *pgStore) Append(ctx context.Context, user, mailbox string, msg *storage.NewMessage) (*storage.Appended, error) {
	list, err := s.AppendMany(ctx, user, mailbox, []*storage.NewMessage{msg})
	if err != nil {
		return nil, err
	}
	return list[0], nil
}

// AppendMany implements storage.Backend: one transaction, all or nothing;
// a message the Sent de-duplication recognises is not stored again.
func (s *pgStore) AppendMany(ctx context.Context, user, mailbox string, msgs []*storage.NewMessage) ([]*storage.Appended, error) {
	name, err := storage.NormalizeMailboxName(mailbox)
	if err != nil {
		return nil, fmt.Errorf("storage: append: %w", err)
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("storage: append: no messages: %w", storage.ErrInvalid)
	}
	now := time.Now()
	ps := make([]*boltstore.PreparedMessage, len(msgs))
	for i, m := range msgs {
		if ps[i], err = boltstore.PrepareMessage(m, now); err != nil {
			return nil, fmt.Errorf("storage: append: %w", err)
		}
	}
	var out []*storage.Appended
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		t := pgTx{ctx: ctx, tx: tx}
		x, err := t.openMailboxByName(user, name)
		if err != nil {
			return err
		}
		out = make([]*storage.Appended, len(ps))
		var fresh int64
		for i, p := range ps {
			dup, err := storage.SentDuplicate(t, x, p.MessageID, now)
			if err != nil {
				return err
			}
			if dup != nil {
				out[i] = dup
				continue
			}
			fresh += int64(len(p.Raw))
		}
		if err := s.checkQuota(ctx, tx, x.user, fresh); err != nil {
			return err
		}
		for i, p := range ps {
			if out[i] != nil {
				continue
			}
			if out[i], err = x.appendPrepared(p, 0, now, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: append: %w", err)
	}
	return out, nil
}

// Deliver implements storage.Backend: every copy, the tracking record and
// the queue entry of the external recipients in one transaction.
// The copies share one stored body when their bodies are the same.
func (s *pgStore) Deliver(ctx context.Context, d *storage.Delivery) (*storage.DeliveryResult, error) {
	if d == nil || (d.Sender == "" && len(d.Recipients) == 0 && len(d.External) == 0) {
		return nil, fmt.Errorf("storage: deliver: nothing to deliver: %w", storage.ErrInvalid)
	}
	now := time.Now()
	var sentCopy, inboxCopy, relayCopy *boltstore.PreparedMessage
	var err error
	if len(d.External) > 0 {
		if d.RelayCopy == nil {
			return nil, fmt.Errorf("storage: deliver: external recipients without a relay copy: %w", storage.ErrInvalid)
		}
		if relayCopy, err = boltstore.PrepareMessage(d.RelayCopy, now); err != nil {
			return nil, fmt.Errorf("storage: deliver: relay copy: %w", err)
		}
	}
	if d.Sender != "" {
		if sentCopy, err = boltstore.PrepareMessage(d.SentCopy, now); err != nil {
			return nil, fmt.Errorf("storage: deliver: sent copy: %w", err)
		}
		if storage.TracksDelivery(d) {
			// Unread until every recipient has read it (tracking.go).
			sentCopy.Flags = slices.DeleteFunc(sentCopy.Flags, func(f imap.Flag) bool { return f == imap.FlagSeen })
		}
	}
	var rcpts []string
	if len(d.Recipients) > 0 {
		if inboxCopy, err = boltstore.PrepareMessage(d.Copy, now); err != nil {
			return nil, fmt.Errorf("storage: deliver: copy: %w", err)
		}
		for _, r := range d.Recipients {
			r = strings.ToLower(r)
			if !slices.Contains(rcpts, r) {
				rcpts = append(rcpts, r)
			}
		}
		// INBOX rows are locked in address order, so crossing deliveries
		// do not deadlock.
		slices.Sort(rcpts)
	}
	body := sharedBody(sentCopy, inboxCopy, relayCopy, len(rcpts))
	sender := strings.ToLower(d.Sender)
	var res *storage.DeliveryResult
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		t := pgTx{ctx: ctx, tx: tx}
		res = &storage.DeliveryResult{Copies: make(map[string]*storage.Appended, len(rcpts))}
		var bodyID int64
		if body != nil {
			if err := tx.QueryRow(ctx, "INSERT INTO bodies (sha256, size, content) VALUES (sha256($1), length($1), $1) RETURNING id",
				body).Scan(&bodyID); err != nil {
				return fmt.Errorf("shared body: %w", err)
			}
		}
		if sender != "" {
			x, err := t.openMailboxByName(sender, storage.Sent)
			if err != nil {
				return fmt.Errorf("sender: %w", err)
			}
			if res.Sent, err = x.appendPrepared(sentCopy, bodyID, now, ev); err != nil {
				return err
			}
		}
		for _, r := range rcpts {
			x, err := t.openMailboxByName(r, storage.Inbox)
			if err != nil {
				return fmt.Errorf("recipient %s: %w", r, err)
			}
			if res.Copies[r], err = x.appendPrepared(inboxCopy, bodyID, now, ev); err != nil {
				return err
			}
		}
		if err := storage.TrackDelivery(t, d, res, now, ev); err != nil {
			return fmt.Errorf("read tracking: %w", err)
		}
		if relayCopy != nil {
			var err error
			if res.QueueID, err = enqueue(t, d, relayCopy, bodyID, res.TrackingID, now, ev); err != nil {
				return fmt.Errorf("queue: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: deliver: %w", err)
	}
	return res, nil
}

// sharedBody returns the body (what follows the header) that every copy
// of a delivery has, when there are several copies and it is not empty;
// nil otherwise (each copy then keeps its own bytes).
func sharedBody(sent, inbox, relay *boltstore.PreparedMessage, recipients int) []byte {
	var copies []*boltstore.PreparedMessage
	stored := recipients
	for _, c := range []*boltstore.PreparedMessage{sent, inbox, relay} {
		if c != nil {
			copies = append(copies, c)
			if c != inbox {
				stored++
			}
		}
	}
	if stored < 2 {
		return nil
	}
	var body []byte
	for i, c := range copies {
		b := c.Raw[headerLen(c.Raw):]
		if i == 0 {
			body = b
		} else if !bytes.Equal(b, body) {
			return nil
		}
	}
	if len(body) == 0 {
		return nil
	}
	return body
}

// openForRead finds a user's mailbox by ID in a read transaction.
func openForRead(ctx context.Context, tx pgx.Tx, user string, id uint64) error {
	addr := strings.ToLower(user)
	var ok bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE id = $1 AND username = $2)", int64(id), addr).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		if err := userExists(ctx, tx, addr); err != nil {
			return err
		}
		return fmt.Errorf("mailbox %d of %s: %w", id, addr, storage.ErrNotFound)
	}
	return nil
}

func collectUIDs(rows pgx.Rows) ([]imap.UID, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (imap.UID, error) {
		var u int64
		err := r.Scan(&u)
		return imap.UID(u), err
	})
}

// UIDs implements storage.Backend.
func (s *pgStore) UIDs(ctx context.Context, user string, mailboxID uint64) ([]imap.UID, error) {
	var uids []imap.UID
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := openForRead(ctx, tx, user, mailboxID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT uid FROM messages WHERE mailbox_id = $1 ORDER BY uid", int64(mailboxID))
		if err != nil {
			return err
		}
		uids, err = collectUIDs(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: uids: %w", err)
	}
	return uids, nil
}

// UIDsBefore implements storage.Backend.
func (s *pgStore) UIDsBefore(ctx context.Context, user string, mailboxID uint64, before imap.UID, limit int) ([]imap.UID, error) {
	if limit <= 0 {
		return nil, nil
	}
	b := int64(before)
	if before == 0 {
		b = maxUID + 1
	}
	var uids []imap.UID
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := openForRead(ctx, tx, user, mailboxID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT uid FROM messages WHERE mailbox_id = $1 AND uid < $2 ORDER BY uid DESC LIMIT $3",
			int64(mailboxID), b, limit)
		if err != nil {
			return err
		}
		uids, err = collectUIDs(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: uids: %w", err)
	}
	return uids, nil
}

// Messages implements storage.Backend.
func (s *pgStore) Messages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, opts storage.LoadOptions) ([]*storage.Message, error) {
	var msgs []*storage.Message
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := openForRead(ctx, tx, user, mailboxID); err != nil {
			return err
		}
		ids := make([]int64, len(uids))
		for i, u := range uids {
			ids[i] = int64(u)
		}
		wantBytes := opts.Body || opts.Header
		// The whole message only when Body is asked for and within
		// BodyMax; otherwise (Header) the start of its own bytes, where
		// the header is, bounded by maxHeaderRead.
		rows, err := tx.Query(ctx, `SELECT m.uid, m.flags, m.internal_date, m.size, m.modseq,
				CASE WHEN $3 THEN m.parsed END,
				CASE WHEN $4 AND ($5 <= 0 OR m.size <= $5) THEN m.own || coalesce(b.content, ''::bytea)
					WHEN $6 THEN substring(m.own FROM 1 FOR $7) END
			FROM messages m LEFT JOIN bodies b ON b.id = m.shared_body_id
			WHERE m.mailbox_id = $1 AND m.uid = ANY($2)`,
			int64(mailboxID), ids, opts.Envelope || opts.BodyStructure, opts.Body, opts.BodyMax, opts.Header, maxHeaderRead)
		if err != nil {
			return err
		}
		byUID := make(map[imap.UID]*storage.Message, len(uids))
		for rows.Next() {
			var uid int64
			var flags []string
			var parsed, raw []byte
			msg := &storage.Message{}
			if err := rows.Scan(&uid, &flags, &msg.InternalDate, &msg.Size, &msg.ModSeq, &parsed, &raw); err != nil {
				rows.Close()
				return err
			}
			msg.UID = imap.UID(uid)
			msg.Flags = make([]imap.Flag, len(flags))
			for i, f := range flags {
				msg.Flags[i] = imap.Flag(f)
			}
			if opts.Envelope || opts.BodyStructure {
				if msg.Envelope, msg.BodyStructure, err = boltstore.DecodeParsed(parsed, opts.Envelope, opts.BodyStructure); err != nil {
					rows.Close()
					return fmt.Errorf("message %d: %w", uid, err)
				}
			}
			if wantBytes && raw != nil {
				n := headerLen(raw)
				switch {
				case opts.Body && opts.BodyMax > 0 && msg.Size > opts.BodyMax:
					if opts.Header {
						msg.Header = raw[:n:n]
					}
				case opts.Body:
					msg.Body = raw
					if opts.Header {
						msg.Header = raw[:n:n]
					}
				default:
					msg.Header = raw[:n:n]
				}
			}
			byUID[msg.UID] = msg
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		msgs = make([]*storage.Message, 0, len(byUID))
		for _, u := range uids {
			if m, ok := byUID[u]; ok {
				msgs = append(msgs, m)
				delete(byUID, u) // a UID asked twice is loaded once
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: messages: %w", err)
	}
	return msgs, nil
}

// maxHeaderRead bounds the bytes Messages reads for a header alone.
const maxHeaderRead = 1 << 20

func sortedUIDs(uids []imap.UID) []imap.UID {
	out := slices.Clone(uids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] == 0 {
		out = out[1:]
	}
	return out
}

// StoreFlags implements storage.Backend.
func (s *pgStore) StoreFlags(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag) ([]storage.FlagUpdate, error) {
	updates, _, err := s.storeFlags(ctx, user, mailboxID, uids, op, flags, 0, false)
	return updates, err
}

// StoreFlagsUnchangedSince implements storage.Backend.
func (s *pgStore) StoreFlagsUnchangedSince(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag, unchangedSince uint64) ([]storage.FlagUpdate, []imap.UID, error) {
	return s.storeFlags(ctx, user, mailboxID, uids, op, flags, unchangedSince, true)
}

func (s *pgStore) storeFlags(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag,
	unchangedSince uint64, conditional bool) ([]storage.FlagUpdate, []imap.UID, error) {
	if _, _, err := boltstore.ApplyFlags(nil, op, flags); err != nil {
		return nil, nil, fmt.Errorf("storage: store flags: %w", err)
	}
	sorted := sortedUIDs(uids)
	var updates []storage.FlagUpdate
	var modified []imap.UID
	err := s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		updates, modified = nil, nil
		t := pgTx{ctx: ctx, tx: tx}
		x, err := t.openMailbox(user, mailboxID)
		if err != nil {
			return err
		}
		for _, uid := range sorted {
			r, ok, err := x.row(uid)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if conditional && r.modseq > unchangedSince {
				modified = append(modified, uid)
				continue
			}
			nf, changed, err := boltstore.ApplyFlags(r.flags, op, flags)
			if err != nil {
				return fmt.Errorf("message %d: %w", uid, err)
			}
			if !changed {
				continue
			}
			wasSeen, isSeen := r.seen(), slices.Contains(nf, imap.FlagSeen)
			modseq, err := x.setFlags(uid, wasSeen, nf)
			if err != nil {
				return err
			}
			if wasSeen != isSeen {
				if err := storage.SeenChanged(t, x, uid, r.date, isSeen, ev); err != nil {
					return err
				}
			}
			updates = append(updates, storage.FlagUpdate{UID: uid, Flags: nf, ModSeq: modseq})
			ev.Add(storage.Event{Kind: storage.EventFlags, User: x.user, MailboxID: x.id, UID: uid, Flags: slices.Clone(nf), ModSeq: modseq})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("storage: store flags: %w", err)
	}
	return updates, modified, nil
}

// Expunge implements storage.Backend.
func (s *pgStore) Expunge(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) ([]imap.UID, error) {
	var sorted []int64
	if uids != nil {
		for _, u := range sortedUIDs(uids) {
			sorted = append(sorted, int64(u))
		}
	}
	all := uids == nil
	var gone []imap.UID
	err := s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		t := pgTx{ctx: ctx, tx: tx}
		x, err := t.openMailbox(user, mailboxID)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT uid FROM messages WHERE mailbox_id = $1 AND '\Deleted' = ANY (flags)
			AND ($2 OR uid = ANY($3)) ORDER BY uid`, int64(mailboxID), all, sorted)
		if err != nil {
			return err
		}
		if gone, err = collectUIDs(rows); err != nil {
			return err
		}
		for _, uid := range gone {
			r, ok, err := x.row(uid)
			if err != nil {
				return err
			}
			if ok {
				if err := x.remove(uid, r, ev); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: expunge: %w", err)
	}
	return gone, nil
}

// Copy implements storage.Backend.
func (s *pgStore) Copy(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*storage.CopyResult, error) {
	res, err := s.copyMessages(ctx, user, mailboxID, uids, dest, false)
	if err != nil {
		return nil, fmt.Errorf("storage: copy: %w", err)
	}
	return res, nil
}

// Move implements storage.Backend: copy and expunge in one transaction.
func (s *pgStore) Move(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*storage.CopyResult, error) {
	res, err := s.copyMessages(ctx, user, mailboxID, uids, dest, true)
	if err != nil {
		return nil, fmt.Errorf("storage: move: %w", err)
	}
	return res, nil
}

func (s *pgStore) copyMessages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string, move bool) (*storage.CopyResult, error) {
	destName, err := storage.NormalizeMailboxName(dest)
	if err != nil {
		return nil, err
	}
	sorted := sortedUIDs(uids)
	var res *storage.CopyResult
	now := time.Now()
	err = s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		t := pgTx{ctx: ctx, tx: tx}
		src, err := t.openMailbox(user, mailboxID)
		if err != nil {
			return err
		}
		dst, err := t.openMailboxByName(src.user, destName)
		if err != nil {
			return err
		}
		if !move {
			ids := make([]int64, len(sorted))
			for i, u := range sorted {
				ids[i] = int64(u)
			}
			var n int64
			if err := tx.QueryRow(ctx, "SELECT coalesce(sum(size), 0)::bigint FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)",
				int64(mailboxID), ids).Scan(&n); err != nil {
				return err
			}
			if err := s.checkQuota(ctx, tx, src.user, n); err != nil {
				return err
			}
		}
		res = &storage.CopyResult{UIDValidity: dst.uidValidity}
		var rows []storedRow
		for _, uid := range sorted {
			var own, parsed []byte
			var shared *int64
			err := tx.QueryRow(ctx, "SELECT own, shared_body_id, parsed FROM messages WHERE mailbox_id = $1 AND uid = $2",
				int64(mailboxID), int64(uid)).Scan(&own, &shared, &parsed)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			r, _, err := src.row(uid)
			if err != nil {
				return err
			}
			a, err := dst.putCopy(own, shared, parsed, r, now, ev)
			if err != nil {
				return err
			}
			res.SourceUIDs = append(res.SourceUIDs, uid)
			res.DestUIDs = append(res.DestUIDs, a.UID)
			rows = append(rows, r)
		}
		if move {
			for i, uid := range res.SourceUIDs {
				if err := storage.MessageMoving(t, src, uid, dst, res.DestUIDs[i], ev); err != nil {
					return err
				}
				if err := src.remove(uid, rows[i], ev); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return res, err
}

// putCopy stores a copy of a message row (its own bytes and its shared
// body reference as they are) under dst's next UID.
func (x *pgMailbox) putCopy(own []byte, shared *int64, parsed []byte, r storedRow, now time.Time, ev *storage.Events) (*storage.Appended, error) {
	if shared == nil {
		return x.put(own, 0, parsed, r.flags, r.date, r.size, r.messageID, now, ev)
	}
	// own is already the header: put keeps it whole with the shared body.
	a, err := x.put(own, *shared, parsed, r.flags, r.date, r.size, r.messageID, now, ev)
	return a, err
}

// Changes implements storage.Backend: the feed from one snapshot.
func (s *pgStore) Changes(ctx context.Context, user string, mailboxID uint64, since uint64) (*storage.ChangeSet, error) {
	cs := &storage.ChangeSet{}
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := openForRead(ctx, tx, user, mailboxID); err != nil {
			return err
		}
		var floor uint64
		if err := tx.QueryRow(ctx, "SELECT highestmodseq, vanished_floor FROM mailboxes WHERE id = $1", int64(mailboxID)).Scan(&cs.HighestModSeq, &floor); err != nil {
			return err
		}
		cs.VanishedIncomplete = since < floor
		rows, err := tx.Query(ctx, "SELECT uid, flags, modseq FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid", int64(mailboxID), int64(since))
		if err != nil {
			return err
		}
		cs.Changed, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.FlagUpdate, error) {
			var u storage.FlagUpdate
			var uid int64
			var flags []string
			err := r.Scan(&uid, &flags, &u.ModSeq)
			u.UID = imap.UID(uid)
			u.Flags = make([]imap.Flag, len(flags))
			for i, f := range flags {
				u.Flags[i] = imap.Flag(f)
			}
			return u, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid", int64(mailboxID), int64(since))
		if err != nil {
			return err
		}
		cs.Vanished, err = collectUIDs(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: changes: %w", err)
	}
	return cs, nil
}

// readChunk is the most ReadBody reads in one query.
const readChunk = 256 << 10

// ReadBody implements storage.Backend: fn reads the message through a
// reader that fetches each chunk (at most readChunk bytes) with its own
// short query, so a large message is never held whole and a slow reader
// holds no transaction.
func (s *pgStore) ReadBody(ctx context.Context, user string, mailboxID uint64, uid imap.UID, fn func(body *io.SectionReader) error) error {
	var size int64
	err := s.view(ctx, func(tx pgx.Tx) error {
		if err := openForRead(ctx, tx, user, mailboxID); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, "SELECT size FROM messages WHERE mailbox_id = $1 AND uid = $2", int64(mailboxID), int64(uid)).Scan(&size)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("message %d of mailbox %d: %w", uid, mailboxID, storage.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: read body: %w", err)
	}
	r := &bodyReader{s: s, ctx: ctx, box: int64(mailboxID), uid: int64(uid)}
	return fn(io.NewSectionReader(r, 0, size))
}

type bodyReader struct {
	s        *pgStore
	ctx      context.Context
	box, uid int64
}

// ReadAt implements io.ReaderAt: one query per chunk.
func (r *bodyReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		want := min(len(p)-n, readChunk)
		var chunk []byte
		err := r.s.pool.QueryRow(r.ctx, `SELECT substring(m.own || coalesce(b.content, ''::bytea) FROM $3 FOR $4)
			FROM messages m LEFT JOIN bodies b ON b.id = m.shared_body_id
			WHERE m.mailbox_id = $1 AND m.uid = $2`, r.box, r.uid, off+int64(n)+1, want).Scan(&chunk)
		if errors.Is(err, pgx.ErrNoRows) {
			return n, fmt.Errorf("message %d expunged while read: %w", r.uid, storage.ErrNotFound)
		}
		if err != nil {
			return n, r.s.dbErr(err)
		}
		n += copy(p[n:], chunk)
		if len(chunk) < want {
			return n, io.EOF
		}
	}
	return n, nil
}
