package pgstore

// Other nodes' changes for this handle's listeners. A node's commits reach
// its own listeners directly (publish); what other nodes commit reaches
// them here: every commit that changes a mailbox sends a NOTIFY (a hint,
// coalesced by the Listener), and on each hint the follower compares every
// mailbox's HIGHESTMODSEQ with the one it has already announced, reads the
// change feed of those that moved, and publishes what it finds as the same
// events a local commit gives. A hint that was missed (the listener's
// connection lost) costs nothing but delay: the next hint, or the one
// every reconnect gives, finds the same modseqs.

import (
	"context"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pochta/pochta/storage"
)

// followerAppName is the application_name of the follower's connection.
const followerAppName = "pochta-follower"

// follower tracks, per mailbox, what this handle's listeners already know.
// Its maps are guarded by the store's commitMu (publish runs under it too).
type follower struct {
	// pool is the follower's own (one connection): it reads while holding
	// commitMu, when this handle's writers may hold every connection of
	// the main pool waiting for that lock.
	pool   *pgxpool.Pool
	seen   map[uint64]followed
	own    map[uint64]map[uint64]bool // mailbox -> modseqs of this handle's commits not yet passed
	stop   context.CancelFunc
	done   chan struct{}
	period time.Duration // a scan at least this often, hint or not
}

type followed struct {
	user   string
	modseq uint64
	maxUID imap.UID
}

// startFollower begins following other nodes' changes.
func (s *pgStore) startFollower() error {
	l, err := NewListener(s.location, s.log, ChannelMailbox)
	if err != nil {
		return err
	}
	l.cfg.RuntimeParams["application_name"] = followerAppName
	pcfg, err := pgxpool.ParseConfig(s.location)
	if err != nil {
		return err
	}
	pcfg.MaxConns = 1
	pcfg.ConnConfig.RuntimeParams["application_name"] = followerAppName + "-reader"
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return err
	}
	f := &follower{pool: pool, seen: map[uint64]followed{}, own: map[uint64]map[uint64]bool{}, done: make(chan struct{}), period: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	s.commitMu.Lock()
	s.follow = f
	err = s.scanLocked(ctx, false)
	s.commitMu.Unlock()
	if err != nil {
		cancel()
		pool.Close()
		return err
	}
	go func() { _ = l.Run(ctx) }()
	go func() {
		defer close(f.done)
		for ctx.Err() == nil {
			wctx, wcancel := context.WithTimeout(ctx, f.period)
			_, _ = l.Wait(wctx)
			wcancel()
			if ctx.Err() != nil {
				return
			}
			s.commitMu.Lock()
			err := s.scanLocked(ctx, true)
			s.commitMu.Unlock()
			if err != nil && ctx.Err() == nil && !s.closed.Load() {
				s.log.Warn("pgstore: reading other nodes' changes failed; trying again at the next hint", "err", err)
			}
		}
	}()
	return nil
}

// stopFollower ends the follower and waits for it.
func (s *pgStore) stopFollower() {
	if s.follow == nil {
		return
	}
	s.follow.stop()
	<-s.follow.done
	s.follow.pool.Close()
}

// beforeOwn runs (commitMu held) after this handle's commit and before
// its events go out. A mailbox whose modseq jumped past what was
// announced had another node's commit in between (its UID, say, lower
// than this commit's): that is read and announced first, so sessions see
// new messages in UID order. Otherwise the commit's modseqs just become
// the announced ones, and the follower's next scan has nothing to read.
func (s *pgStore) beforeOwn(ctx context.Context, evs []storage.Event) {
	f := s.follow
	if f == nil {
		return
	}
	type span struct{ min, max uint64 }
	spans := map[uint64]span{}
	for _, ev := range evs {
		if ev.MailboxID == 0 || ev.ModSeq == 0 {
			continue
		}
		sp, ok := spans[ev.MailboxID]
		if !ok || ev.ModSeq < sp.min {
			sp.min = ev.ModSeq
		}
		sp.max = max(sp.max, ev.ModSeq)
		spans[ev.MailboxID] = sp
		m := f.own[ev.MailboxID]
		if m == nil {
			m = map[uint64]bool{}
			f.own[ev.MailboxID] = m
		}
		m[ev.ModSeq] = true
	}
	gap := false
	for id, sp := range spans {
		x, ok := f.seen[id]
		if ok && sp.min <= x.modseq+1 {
			x.modseq = max(x.modseq, sp.max)
			f.seen[id] = x
			delete(f.own, id)
			continue
		}
		gap = true
	}
	if gap {
		if err := s.scanLocked(ctx, true); err != nil && !s.closed.Load() {
			s.log.Warn("pgstore: reading other nodes' changes before this node's failed", "err", err)
		}
	}
	for _, ev := range evs {
		if ev.Kind == storage.EventAppend {
			if x, ok := f.seen[ev.MailboxID]; ok && ev.UID > x.maxUID {
				x.maxUID = ev.UID
				f.seen[ev.MailboxID] = x
			}
		}
	}
}

// scanLocked (commitMu held: no commit of this handle is between its
// COMMIT and its events) compares every mailbox's HIGHESTMODSEQ with what
// was announced and, with announce, publishes the changes of those that
// moved; without, it only learns where every mailbox stands.
func (s *pgStore) scanLocked(ctx context.Context, announce bool) error {
	f := s.follow
	rows, err := f.pool.Query(ctx, "SELECT id, username, highestmodseq, uidnext FROM mailboxes")
	if err != nil {
		return err
	}
	type box struct {
		id, modseq uint64
		user       string
		uidNext    uint32
	}
	var boxes []box
	for rows.Next() {
		var b box
		if err := rows.Scan(&b.id, &b.user, &b.modseq, &b.uidNext); err != nil {
			rows.Close()
			return err
		}
		boxes = append(boxes, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	present := make(map[uint64]bool, len(boxes))
	var evs []storage.Event
	for _, b := range boxes {
		present[b.id] = true
		x, known := f.seen[b.id]
		if !announce {
			f.seen[b.id] = followed{user: b.user, modseq: b.modseq, maxUID: imap.UID(b.uidNext - 1)}
			continue
		}
		if known && b.modseq <= x.modseq {
			continue
		}
		if !known {
			x = followed{user: b.user} // created since: everything in it is news
		}
		cs, err := s.changes(ctx, f.pool, b.user, b.id, x.modseq)
		if err != nil {
			return err
		}
		own := f.own[b.id]
		for _, m := range cs.Changed {
			if own[m.ModSeq] {
				x.maxUID = max(x.maxUID, m.UID)
				continue
			}
			kind := storage.EventFlags
			if m.UID > x.maxUID {
				kind = storage.EventAppend
				x.maxUID = m.UID
			}
			evs = append(evs, storage.Event{Kind: kind, User: b.user, MailboxID: b.id, UID: m.UID, Flags: m.Flags, ModSeq: m.ModSeq})
		}
		for _, uid := range cs.Vanished {
			// Announcing this handle's own expunge again changes nothing:
			// a session drops a UID once.
			evs = append(evs, storage.Event{Kind: storage.EventExpunge, User: b.user, MailboxID: b.id, UID: uid, ModSeq: cs.HighestModSeq})
		}
		x.modseq = cs.HighestModSeq
		f.seen[b.id] = x
		for ms := range own {
			if ms <= x.modseq {
				delete(own, ms)
			}
		}
	}
	for id, x := range f.seen {
		if !present[id] {
			delete(f.seen, id)
			delete(f.own, id)
			if announce {
				evs = append(evs, storage.Event{Kind: storage.EventMailboxes, User: x.user, MailboxID: id})
			}
		}
	}
	if len(evs) > 0 {
		s.log.Debug("pgstore: other nodes' changes", "events", len(evs))
		s.deliver(evs)
	}
	return nil
}
