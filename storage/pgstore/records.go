package pgstore

// storage.Records over PostgreSQL: a RecordTx is one pgx transaction; a
// MailboxTx writes its counters to the mailbox's row at each change (the
// row is locked for the rest of the transaction), so two MailboxTx of one
// mailbox in a transaction never disagree and Save has nothing left to do.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

// pgTx is a storage.RecordTx over one transaction.
type pgTx struct {
	ctx context.Context
	tx  pgx.Tx
	// ro: a read-only transaction (ViewRecords), which takes no row locks.
	ro bool
}

// forUpdate is the locking clause of t's reads of rows it may change.
func (t pgTx) forUpdate() string {
	if t.ro {
		return ""
	}
	return " FOR UPDATE"
}

var _ storage.RecordTx = pgTx{}

// ViewRecords implements storage.Records.
func (s *pgStore) ViewRecords(ctx context.Context, fn func(tx storage.RecordTx) error) error {
	return s.view(ctx, func(tx pgx.Tx) error { return fn(pgTx{ctx: ctx, tx: tx, ro: true}) })
}

// UpdateRecords implements storage.Records: one transaction, fn run once.
func (s *pgStore) UpdateRecords(ctx context.Context, size int, fn func(tx storage.RecordTx, ev *storage.Events) error) error {
	return s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error { return fn(pgTx{ctx: ctx, tx: tx}, ev) })
}

// PrepareNotices implements storage.Records.
func (s *pgStore) PrepareNotices(ns []*storage.Notice, now time.Time) ([]storage.PreparedNotice, int, error) {
	var out []storage.PreparedNotice
	size := 0
	for _, n := range ns {
		if n == nil || len(n.Recipients) == 0 {
			continue
		}
		p, err := boltstore.PrepareMessage(n.Message, now)
		if err != nil {
			return nil, 0, fmt.Errorf("notice: %w", err)
		}
		var rcpts []string
		for _, r := range n.Recipients {
			r = strings.ToLower(r)
			if !slices.Contains(rcpts, r) {
				rcpts = append(rcpts, r)
			}
		}
		out = append(out, storage.PreparedNotice{Recipients: rcpts, Message: p})
		size += p.Size() * len(rcpts)
	}
	return out, size, nil
}

// pgMailbox is a storage.MailboxTx: one mailbox, its row locked.
type pgMailbox struct {
	t           pgTx
	user        string
	id          uint64
	name        string
	uidValidity uint32
	specialUse  imap.MailboxAttr
}

// openMailbox locks and opens a user's mailbox by ID; ErrNotFound if the
// user or the mailbox is gone (or the mailbox is another user's).
func (t pgTx) openMailbox(user string, id uint64) (*pgMailbox, error) {
	addr := strings.ToLower(user)
	x := &pgMailbox{t: t, user: addr, id: id}
	var uv int64
	var attr string
	err := t.tx.QueryRow(t.ctx, `SELECT name, uidvalidity, special_use FROM mailboxes
		WHERE id = $1 AND username = $2`+t.forUpdate(), int64(id), addr).Scan(&x.name, &uv, &attr)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := userExists(t.ctx, t.tx, addr); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("mailbox %d of %s: %w", id, addr, storage.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	x.uidValidity = uint32(uv)
	x.specialUse = imap.MailboxAttr(attr)
	return x, nil
}

// openMailboxByName is openMailbox by (normalized) name.
func (t pgTx) openMailboxByName(user, name string) (*pgMailbox, error) {
	addr := strings.ToLower(user)
	var id int64
	err := t.tx.QueryRow(t.ctx, "SELECT id FROM mailboxes WHERE username = $1 AND name = $2", addr, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := userExists(t.ctx, t.tx, addr); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("mailbox %q of %s: %w", name, addr, storage.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return t.openMailbox(addr, uint64(id))
}

// Mailbox implements storage.RecordTx.
func (t pgTx) Mailbox(user string, id uint64) (storage.MailboxTx, error) {
	x, err := t.openMailbox(user, id)
	if err != nil {
		return nil, err
	}
	return x, nil
}

func (x *pgMailbox) User() string                 { return x.user }
func (x *pgMailbox) ID() uint64                   { return x.id }
func (x *pgMailbox) Name() string                 { return x.name }
func (x *pgMailbox) UIDValidity() uint32          { return x.uidValidity }
func (x *pgMailbox) SpecialUse() imap.MailboxAttr { return x.specialUse }

// Save implements storage.MailboxTx: every change already wrote the row.
func (x *pgMailbox) Save() error { return nil }

// storedRow is the fixed part of one message row.
type storedRow struct {
	flags     []imap.Flag
	date      time.Time
	size      int64
	modseq    uint64
	messageID string
}

func (r storedRow) seen() bool { return slices.Contains(r.flags, imap.FlagSeen) }

func (x *pgMailbox) row(uid imap.UID) (storedRow, bool, error) {
	var r storedRow
	var flags []string
	var mid *string
	err := x.t.tx.QueryRow(x.t.ctx, `SELECT flags, internal_date, size, modseq, message_id FROM messages
		WHERE mailbox_id = $1 AND uid = $2`, int64(x.id), int64(uid)).Scan(&flags, &r.date, &r.size, &r.modseq, &mid)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	for _, f := range flags {
		r.flags = append(r.flags, imap.Flag(f))
	}
	if mid != nil {
		r.messageID = *mid
	}
	return r, true, nil
}

// MessageInfo implements storage.MailboxTx.
func (x *pgMailbox) MessageInfo(uid imap.UID) (storage.MessageInfo, bool, error) {
	r, ok, err := x.row(uid)
	if err != nil || !ok {
		return storage.MessageInfo{}, false, err
	}
	return storage.MessageInfo{InternalDate: r.date, Seen: r.seen(), Size: r.size, ModSeq: r.modseq}, true, nil
}

// Remove implements storage.MailboxTx (remove).
func (x *pgMailbox) Remove(uid imap.UID, ev *storage.Events) (bool, error) {
	r, ok, err := x.row(uid)
	if err != nil || !ok {
		return false, err
	}
	return true, x.remove(uid, r, ev)
}

// remove deletes one message: the rules' removal hook first, then the
// row, a tombstone under the next modseq, the counters and EventExpunge.
func (x *pgMailbox) remove(uid imap.UID, r storedRow, ev *storage.Events) error {
	if err := storage.MessageRemoving(x.t, x, storage.StoredMessage{UID: uid, MessageID: r.messageID, InternalDate: r.date, Seen: r.seen()}, ev); err != nil {
		return err
	}
	unseen := int64(0)
	if !r.seen() {
		unseen = 1
	}
	var modseq uint64
	err := x.t.tx.QueryRow(x.t.ctx, `UPDATE mailboxes SET highestmodseq = highestmodseq + 1,
		messages = messages - 1, unseen = unseen - $2, size = size - $3
		WHERE id = $1 RETURNING highestmodseq`, int64(x.id), unseen, r.size).Scan(&modseq)
	if err != nil {
		return err
	}
	if _, err := x.t.tx.Exec(x.t.ctx, "DELETE FROM messages WHERE mailbox_id = $1 AND uid = $2", int64(x.id), int64(uid)); err != nil {
		return err
	}
	if _, err := x.t.tx.Exec(x.t.ctx, `INSERT INTO expunged (mailbox_id, uid, modseq) VALUES ($1, $2, $3)
		ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq, expunged_at = now()`, int64(x.id), int64(uid), modseq); err != nil {
		return err
	}
	ev.Add(storage.Event{Kind: storage.EventExpunge, User: x.user, MailboxID: x.id, UID: uid, ModSeq: modseq})
	return notifyMailbox(x.t.ctx, x.t.tx, int64(x.id))
}

// setFlags writes a message's new flags under the next modseq and keeps
// the unseen counter; it returns the modseq.
func (x *pgMailbox) setFlags(uid imap.UID, wasSeen bool, flags []imap.Flag) (uint64, error) {
	delta := int64(0)
	isSeen := slices.Contains(flags, imap.FlagSeen)
	switch {
	case wasSeen && !isSeen:
		delta = 1
	case !wasSeen && isSeen:
		delta = -1
	}
	var modseq uint64
	err := x.t.tx.QueryRow(x.t.ctx, `UPDATE mailboxes SET highestmodseq = highestmodseq + 1, unseen = unseen + $2
		WHERE id = $1 RETURNING highestmodseq`, int64(x.id), delta).Scan(&modseq)
	if err != nil {
		return 0, err
	}
	if _, err := x.t.tx.Exec(x.t.ctx, "UPDATE messages SET flags = $3, modseq = $4 WHERE mailbox_id = $1 AND uid = $2",
		int64(x.id), int64(uid), flagStrings(flags), modseq); err != nil {
		return 0, err
	}
	return modseq, notifyMailbox(x.t.ctx, x.t.tx, int64(x.id))
}

func flagStrings(flags []imap.Flag) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = string(f)
	}
	return out
}

// SetSeen implements storage.MailboxTx.
func (x *pgMailbox) SetSeen(uid imap.UID, ev *storage.Events) (bool, error) {
	r, ok, err := x.row(uid)
	if err != nil || !ok || r.seen() {
		return false, err
	}
	flags, _, err := boltstore.ApplyFlags(r.flags, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen})
	if err != nil {
		return false, err
	}
	modseq, err := x.setFlags(uid, false, flags)
	if err != nil {
		return false, err
	}
	if err := storage.SeenSet(x.t, x, uid, r.date); err != nil {
		return false, err
	}
	ev.AddUntagged(storage.Event{Kind: storage.EventFlags, User: x.user, MailboxID: x.id, UID: uid, Flags: flags, ModSeq: modseq})
	return true, nil
}

// TrackingRecord implements storage.RecordTx.
func (t pgTx) TrackingRecord(id uint64) (*storage.TrackingRecord, bool) {
	var b []byte
	// Locked in a write: two nodes settling recipients of one record
	// take turns instead of losing one another's change.
	if err := t.tx.QueryRow(t.ctx, "SELECT rec FROM tracking_records WHERE id = $1"+t.forUpdate(), int64(id)).Scan(&b); err != nil {
		return nil, false
	}
	var rec storage.TrackingRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, false
	}
	return &rec, true
}

// NewTrackingID implements storage.RecordTx.
func (t pgTx) NewTrackingID() (uint64, error) {
	var id uint64
	err := t.tx.QueryRow(t.ctx, "SELECT nextval('tracking_record_ids')").Scan(&id)
	return id, err
}

// PutTrackingRecord implements storage.RecordTx.
func (t pgTx) PutTrackingRecord(id uint64, rec *storage.TrackingRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("tracking record %d: %w", id, err)
	}
	_, err = t.tx.Exec(t.ctx, `INSERT INTO tracking_records (id, rec) VALUES ($1, $2::jsonb)
		ON CONFLICT (id) DO UPDATE SET rec = excluded.rec`, int64(id), string(b))
	return err
}

// DeleteTrackingRecord implements storage.RecordTx.
func (t pgTx) DeleteTrackingRecord(id uint64) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM tracking_records WHERE id = $1", int64(id))
	return err
}

// TrackedID implements storage.RecordTx.
func (t pgTx) TrackedID(user string, box uint64, uid imap.UID) (uint64, bool, error) {
	if err := userExists(t.ctx, t.tx, user); err != nil {
		return 0, false, err
	}
	var id uint64
	err := t.tx.QueryRow(t.ctx, "SELECT tracking_id FROM tracked WHERE username = $1 AND mailbox_id = $2 AND uid = $3",
		user, int64(box), int64(uid)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return id, err == nil, err
}

// SetTracked implements storage.RecordTx.
func (t pgTx) SetTracked(user string, box uint64, uid imap.UID, id uint64) error {
	if err := userExists(t.ctx, t.tx, user); err != nil {
		return err
	}
	_, err := t.tx.Exec(t.ctx, `INSERT INTO tracked (username, mailbox_id, uid, tracking_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (username, mailbox_id, uid) DO UPDATE SET tracking_id = excluded.tracking_id`, user, int64(box), int64(uid), int64(id))
	return err
}

// DeleteTracked implements storage.RecordTx.
func (t pgTx) DeleteTracked(user string, box uint64, uid imap.UID) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM tracked WHERE username = $1 AND mailbox_id = $2 AND uid = $3", user, int64(box), int64(uid))
	return err
}

// TrackedUIDs implements storage.RecordTx.
func (t pgTx) TrackedUIDs(user string, box uint64) ([]imap.UID, error) {
	rows, err := t.tx.Query(t.ctx, "SELECT uid FROM tracked WHERE username = $1 AND mailbox_id = $2 ORDER BY uid", user, int64(box))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (imap.UID, error) {
		var u int64
		err := r.Scan(&u)
		return imap.UID(u), err
	})
}

// TrackedMessages implements storage.RecordTx.
func (t pgTx) TrackedMessages(user string) ([]storage.MessageRef, error) {
	rows, err := t.tx.Query(t.ctx, "SELECT mailbox_id, uid FROM tracked WHERE username = $1 ORDER BY mailbox_id, uid", user)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.MessageRef, error) {
		var box, uid int64
		err := r.Scan(&box, &uid)
		return storage.MessageRef{Mailbox: uint64(box), UID: imap.UID(uid)}, err
	})
}

// SentLog implements storage.RecordTx.
func (t pgTx) SentLog(user string) ([]uint64, error) {
	if err := userExists(t.ctx, t.tx, user); err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(t.ctx, "SELECT tracking_id FROM sent_log WHERE username = $1 ORDER BY tracking_id", user)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uint64])
}

// AddSentLog implements storage.RecordTx.
func (t pgTx) AddSentLog(user string, id uint64) error {
	if err := userExists(t.ctx, t.tx, user); err != nil {
		return err
	}
	_, err := t.tx.Exec(t.ctx, "INSERT INTO sent_log (username, tracking_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", user, int64(id))
	return err
}

// DeleteSentLog implements storage.RecordTx.
func (t pgTx) DeleteSentLog(user string, id uint64) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM sent_log WHERE username = $1 AND tracking_id = $2", user, int64(id))
	return err
}

// SentID implements storage.RecordTx.
func (t pgTx) SentID(user, messageID string) (storage.SentIDEntry, bool, error) {
	if err := userExists(t.ctx, t.tx, user); err != nil {
		return storage.SentIDEntry{}, false, err
	}
	var e storage.SentIDEntry
	var box, uid int64
	err := t.tx.QueryRow(t.ctx, "SELECT mailbox_id, uid, stored FROM sent_ids WHERE username = $1 AND message_id = $2",
		user, messageID).Scan(&box, &uid, &e.Stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	e.Mailbox, e.UID = uint64(box), imap.UID(uid)
	return e, true, nil
}

// PutSentID implements storage.RecordTx.
func (t pgTx) PutSentID(user, messageID string, e storage.SentIDEntry) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO sent_ids (username, message_id, mailbox_id, uid, stored) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (username, message_id) DO UPDATE SET mailbox_id = excluded.mailbox_id, uid = excluded.uid, stored = excluded.stored`,
		user, messageID, int64(e.Mailbox), int64(e.UID), e.Stored)
	return err
}

// DeleteSentID implements storage.RecordTx.
func (t pgTx) DeleteSentID(user, messageID string) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM sent_ids WHERE username = $1 AND message_id = $2", user, messageID)
	return err
}

// PutUnread implements storage.RecordTx.
func (t pgTx) PutUnread(e storage.UnreadEntry) error {
	_, err := t.tx.Exec(t.ctx, "INSERT INTO unread (date, username, mailbox_id, uid) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
		int64(e.Date), e.User, int64(e.Mailbox), int64(e.UID))
	return err
}

// DeleteUnread implements storage.RecordTx.
func (t pgTx) DeleteUnread(e storage.UnreadEntry) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM unread WHERE date = $1 AND username = $2 AND mailbox_id = $3 AND uid = $4",
		int64(e.Date), e.User, int64(e.Mailbox), int64(e.UID))
	return err
}

// UnreadBefore implements storage.RecordTx.
func (t pgTx) UnreadBefore(limit uint64, max int) ([]storage.UnreadEntry, error) {
	rows, err := t.tx.Query(t.ctx, `SELECT date, username, mailbox_id, uid FROM unread WHERE date < $1
		ORDER BY date, username COLLATE "C", mailbox_id, uid LIMIT $2`, int64(limit), max)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.UnreadEntry, error) {
		var e storage.UnreadEntry
		var date, box, uid int64
		err := r.Scan(&date, &e.User, &box, &uid)
		e.Date, e.Mailbox, e.UID = uint64(date), uint64(box), imap.UID(uid)
		return e, err
	})
}

// DayCount implements storage.RecordTx. In a write it locks the counter's
// row (creating it at 0): claims on several nodes checking one limit take
// turns, so together they never count past it.
func (t pgTx) DayCount(day, user string) (int, error) {
	if !t.ro {
		if _, err := t.tx.Exec(t.ctx, "INSERT INTO daily_counters (day, username, count) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING", day, user); err != nil {
			return 0, err
		}
	}
	var n int
	err := t.tx.QueryRow(t.ctx, "SELECT coalesce((SELECT count FROM daily_counters WHERE day = $1 AND username = $2"+t.forUpdate()+"), 0)", day, user).Scan(&n)
	return n, err
}

// AddDayCount implements storage.RecordTx.
func (t pgTx) AddDayCount(day, user string, delta int) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO daily_counters (day, username, count) VALUES ($1, $2, greatest($3, 0))
		ON CONFLICT (day, username) DO UPDATE SET count = greatest(daily_counters.count + $3, 0)`, day, user, delta)
	return err
}

// PruneDayCounts implements storage.RecordTx.
func (t pgTx) PruneDayCounts(keep string) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM daily_counters WHERE day < $1", keep)
	return err
}

// Alerted implements storage.RecordTx.
func (t pgTx) Alerted(day, user string) (bool, error) {
	var ok bool
	err := t.tx.QueryRow(t.ctx, "SELECT EXISTS (SELECT 1 FROM daily_alerts WHERE day = $1 AND username = $2)", day, user).Scan(&ok)
	return ok, err
}

// SetAlerted implements storage.RecordTx.
func (t pgTx) SetAlerted(day, user string) error {
	_, err := t.tx.Exec(t.ctx, "INSERT INTO daily_alerts (day, username) VALUES ($1, $2) ON CONFLICT DO NOTHING", day, user)
	return err
}

// PruneAlerted implements storage.RecordTx.
func (t pgTx) PruneAlerted(keep string) error {
	_, err := t.tx.Exec(t.ctx, "DELETE FROM daily_alerts WHERE day < $1", keep)
	return err
}

// RelayState implements storage.RecordTx.
func (t pgTx) RelayState() (string, error) {
	var st string
	err := t.tx.QueryRow(t.ctx, "SELECT state FROM relay_state"+t.forUpdate()).Scan(&st)
	return st, err
}

// SetRelayState implements storage.RecordTx.
func (t pgTx) SetRelayState(state string) error {
	_, err := t.tx.Exec(t.ctx, "UPDATE relay_state SET state = $1, updated_at = now()", state)
	return err
}

// DeliverNotices implements storage.RecordTx: each notice goes to its
// recipients' INBOXes; recipients that are not users are skipped.
func (t pgTx) DeliverNotices(ns []storage.PreparedNotice, ev *storage.Events) error {
	for _, n := range ns {
		p, ok := n.Message.(*boltstore.PreparedMessage)
		if !ok {
			return fmt.Errorf("notice prepared by another backend: %w", storage.ErrInvalid)
		}
		for _, r := range n.Recipients {
			x, err := t.openMailboxByName(r, storage.Inbox)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if _, err := x.appendPrepared(p, 0, time.Now(), ev); err != nil {
				return err
			}
		}
	}
	return nil
}
