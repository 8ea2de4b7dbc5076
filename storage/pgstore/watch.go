package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
)

// watch turns other nodes' commits into this handle's events. Its state is
// guarded by the store's commitMu: a catch-up holds it from reading the
// feed until its events are out, so no own commit falls between the two
// and every change is announced once, by its own commit or by the feed.
type watch struct {
	boxes map[uint64]*boxSeen
	// lastQueue: the highest queue ID seen. seenQueue: the IDs above
	// lastQueue-queueWindow seen (announced, ours, or there at the
	// start), so an ID allocated earlier but committed later than one
	// seen is still announced.
	lastQueue uint64
	seenQueue map[uint64]bool

	cancel context.CancelFunc
	done   chan struct{}
	// primed: a catch-up has read the state in, so SyncMailbox may
	// announce what follows it.
	primed atomic.Bool
}

// boxSeen is what this handle has announced of one mailbox.
type boxSeen struct {
	user, name string
	// modseq: the feed has been read up to here.
	modseq uint64
	// feedUID: the highest UID the feed reads have covered.
	feedUID uint64
	// own: modseqs above modseq of this handle's own commits, announced.
	own map[uint64]bool
	// ownUIDs: UIDs above feedUID this handle appended and announced.
	ownUIDs map[uint64]bool
	// renamed: an own commit changed the mailbox list entry (a rename,
	// announced); the next catch-up takes the name silently.
	renamed bool
}

func (w *watch) box(id uint64, user string) *boxSeen {
	b := w.boxes[id]
	if b == nil {
		b = &boxSeen{user: user, own: map[uint64]bool{}, ownUIDs: map[uint64]bool{}}
		w.boxes[id] = b
	}
	return b
}

// recordOwn notes this handle's own events (commitMu held), so a catch-up
// does not announce them again.
func (w *watch) recordOwn(evs []storage.Event) {
	for _, ev := range evs {
		switch ev.Kind {
		case storage.EventQueued:
			w.seenQueue[ev.QueueID] = true
			continue
		case storage.EventMailboxes:
			if ev.ModSeq == 0 {
				delete(w.boxes, ev.MailboxID)
				continue
			}
			// A create or rename: its ModSeq is the mailbox's present
			// one, not a change of its own, so it is not noted as ours.
			w.box(ev.MailboxID, ev.User).renamed = true
			continue
		}
		if ev.MailboxID == 0 || ev.ModSeq == 0 {
			continue
		}
		b := w.box(ev.MailboxID, ev.User)
		if ev.ModSeq > b.modseq {
			b.own[ev.ModSeq] = true
		}
		if ev.Kind == storage.EventAppend && uint64(ev.UID) > b.feedUID {
			b.ownUIDs[uint64(ev.UID)] = true
		}
	}
}

// startWatch primes the watch with the database's present state and starts
// a Listener whose hints make the handle read what other nodes changed.
// Called once, by the first Listen.
func (s *pgStore) startWatch() {
	w := &watch{boxes: map[uint64]*boxSeen{}, seenQueue: map[uint64]bool{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	l, err := NewListener(s.location, s.log, ChannelMailbox)
	if err != nil {
		s.log.Error("pgstore: other nodes' changes will not be announced", "err", err)
		close(w.done)
		return
	}
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	primed := s.catchUp(pctx, w, false, &catchUpScope{full: true}) == nil
	pcancel()
	w.primed.Store(primed)
	go func() {
		defer close(w.done)
		go l.Run(ctx) //nolint:errcheck // returns ctx's error
		retry := time.NewTimer(time.Hour)
		retry.Stop()
		// full: the next catch-up reads everything (at the start, and
		// after a failure), whatever its hint names; unsent: carried
		// events of a failed catch-up, sent with the next.
		full := true
		for {
			wctx, wcancel := context.WithCancel(ctx)
			type waited struct {
				h   Hint
				err error
			}
			hint := make(chan waited, 1)
			go func() { h, err := l.Wait(wctx); hint <- waited{h, err} }()
			var sc *catchUpScope
			select {
			case <-ctx.Done():
				wcancel()
				return
			case <-retry.C:
				wcancel()
				sc = &catchUpScope{full: true}
				if got := <-hint; got.err == nil {
					sc = scopeOf(got.h, s.token) // a hint came as the wait was cut
				}
			case got := <-hint:
				wcancel()
				if got.err != nil {
					return
				}
				sc = scopeOf(got.h, s.token)
			}
			sc.full = sc.full || full
			// Carried events first, without waiting for the catch-up's
			// reads (a deletion must end cached logins at once), and
			// under commitMu: listeners get one event at a time.
			if len(sc.carried) > 0 {
				s.commitMu.Lock()
				s.fanOut(sc.carried)
				s.commitMu.Unlock()
				sc.carried = nil
			}
			if err := s.catchUp(ctx, w, primed, sc); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("pgstore: reading other nodes' changes; retrying in 1s", "err", err)
				retry.Reset(time.Second)
				full = true
				continue
			}
			primed, full = true, false
			w.primed.Store(true)
		}
	}()
}

// stopWatch ends the watch, if one was started.
func (s *pgStore) stopWatch() {
	s.watchOnce.Do(func() {}) // a Listen after Close starts nothing
	if w := s.watch.Load(); w != nil {
		w.cancel()
		<-w.done
	}
}

// catchUpScope is what a hint says changed: the mailboxes named in its
// notifications' payloads, whether a queue entry was added, and the events
// other nodes' notifications carried whole (read tracking, accounts). A
// hint that may have missed notifications, overflowed, or names a change
// to the mailbox list (a create, rename or delete: payload "mailboxes") is
// full: everything is read. Carried events a hint lost are not recovered:
// the web page reloads at its check interval; for accounts such a hint
// carries an EventAccount with no User (drop every cached login).
type catchUpScope struct {
	full    bool
	boxes   []int64
	queue   bool
	carried []storage.Event
}

// scopeOf is the scope of h; self is this handle's token, whose own
// carried events are left out (they are out already).
func scopeOf(h Hint, self string) *catchUpScope {
	sc := &catchUpScope{full: h.MayHaveMissed || h.PayloadsOverflow || h.EventsOverflow}
	if h.MayHaveMissed || h.EventsOverflow {
		// Account changes may have been among the lost: every cached
		// login goes (User empty). At a node's start its cache is empty:
		// it costs nothing.
		sc.carried = append(sc.carried, storage.Event{Kind: storage.EventAccount})
	}
	for _, p := range h.Events {
		if from, ev, ok := parseEventNote(p); ok && from != self {
			sc.carried = append(sc.carried, ev)
		}
	}
	for _, p := range h.Payloads {
		if p == "queue" {
			sc.queue = true
			continue
		}
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil || id <= 0 {
			sc.full = true // "mailboxes", or a payload this version does not know
			continue
		}
		sc.boxes = append(sc.boxes, id)
	}
	return sc
}

// carried reports the kinds of event a notification carries whole to the
// other nodes (they have no feed to read them from): read-tracking and
// account changes.
func carried(k storage.EventKind) bool {
	return k == storage.EventTracking || k == storage.EventAccount
}

// eventNote is the payload announcing a carried event to the other nodes:
// "event <token> <json>", the event itself in the JSON (well under
// PostgreSQL's 8,000-byte payload limit: an address is at most 254 bytes).
func eventNote(token string, ev storage.Event) (string, error) {
	b, err := json.Marshal(eventJSON{Kind: ev.Kind, User: ev.User, Mailbox: ev.MailboxID, UID: uint32(ev.UID), Tracking: ev.TrackingID, Deleted: ev.Deleted})
	if err != nil {
		return "", err
	}
	return "event " + token + " " + string(b), nil
}

type eventJSON struct {
	Kind     storage.EventKind `json:"k"`
	User     string            `json:"u"`
	Mailbox  uint64            `json:"m,omitempty"`
	UID      uint32            `json:"uid,omitempty"`
	Tracking uint64            `json:"t,omitempty"`
	Deleted  bool              `json:"d,omitempty"`
}

func parseEventNote(p string) (from string, ev storage.Event, ok bool) {
	rest, ok := strings.CutPrefix(p, "event ")
	if !ok {
		return "", ev, false
	}
	from, body, ok := strings.Cut(rest, " ")
	var j eventJSON
	if !ok || json.Unmarshal([]byte(body), &j) != nil || j.User == "" || !carried(j.Kind) {
		return "", ev, false
	}
	return from, storage.Event{Kind: j.Kind, User: j.User, MailboxID: j.Mailbox, UID: imap.UID(j.UID), TrackingID: j.Tracking, Deleted: j.Deleted}, true
}

// catchUp reads every mailbox changed since the watch last looked, and the
// new queue entries, and publishes what other nodes did as events (emit
// false: only take the state in). A scope that is not full reads only the
// mailboxes and the queue it names: a mailbox missing from the database
// then means nothing (its delete sent "mailboxes", which reads
// everything).
// The connection is taken before commitMu, so a catch-up never waits for
// the pool while own commits wait for it.
func (s *pgStore) catchUp(ctx context.Context, w *watch, emit bool, scope *catchUpScope) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: catching up: %w", err)
	}
	defer conn.Release()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.watch.Store(w)
	var evs []storage.Event
	add := func(ev storage.Event) {
		if emit {
			evs = append(evs, ev)
		}
	}
	type row struct {
		id         uint64
		user, name string
		modseq     uint64
		uidnext    uint64
	}
	var rows []row
	var queued []uint64
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		const cols = "SELECT id, username, name, highestmodseq, uidnext FROM mailboxes"
		var rs pgx.Rows
		var err error
		switch {
		case scope.full:
			rs, err = tx.Query(ctx, cols)
		case len(scope.boxes) > 0:
			rs, err = tx.Query(ctx, cols+" WHERE id = ANY($1)", scope.boxes)
		}
		if err != nil {
			return err
		}
		if rs != nil {
			var r row
			_, err = pgx.ForEachRow(rs, []any{&r.id, &r.user, &r.name, &r.modseq, &r.uidnext}, func() error { rows = append(rows, r); return nil })
			if err != nil {
				return err
			}
		}
		if !scope.full && !scope.queue {
			return nil
		}
		top := w.lastQueue
		if !emit {
			if err := tx.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM queue").Scan(&top); err != nil {
				return err
			}
		}
		rs, err = tx.Query(ctx, "SELECT id FROM queue WHERE id > $1 ORDER BY id", int64(top)-queueWindow)
		if err != nil {
			return err
		}
		queued, err = pgx.CollectRows(rs, pgx.RowTo[uint64])
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: catching up: %w", err)
	}
	present := make(map[uint64]bool, len(rows))
	for _, r := range rows {
		present[r.id] = true
		b := w.boxes[r.id]
		if b == nil {
			b = w.box(r.id, r.user)
			b.name = r.name
			if !emit {
				b.modseq, b.feedUID = r.modseq, r.uidnext-1
				continue
			}
			add(storage.Event{Kind: storage.EventMailboxes, User: r.user, MailboxID: r.id, ModSeq: r.modseq})
		}
		if b.name != r.name {
			if !b.renamed {
				add(storage.Event{Kind: storage.EventMailboxes, User: r.user, MailboxID: r.id, ModSeq: r.modseq})
			}
			b.name = r.name
		}
		b.renamed = false
		if r.modseq <= b.modseq {
			continue
		}
		cs, err := changes(ctx, conn, int64(r.id), b.modseq)
		if err != nil {
			return err
		}
		b.apply(r.user, r.id, cs, add)
	}
	for id, b := range w.boxes {
		if scope.full && !present[id] {
			add(storage.Event{Kind: storage.EventMailboxes, User: b.user, MailboxID: id})
			delete(w.boxes, id)
		}
	}
	for _, id := range queued {
		if !w.seenQueue[id] {
			add(storage.Event{Kind: storage.EventQueued, QueueID: id})
			w.seenQueue[id] = true
		}
		w.lastQueue = max(w.lastQueue, id)
	}
	for id := range w.seenQueue {
		if int64(id) <= int64(w.lastQueue)-queueWindow {
			delete(w.seenQueue, id)
		}
	}
	s.fanOut(evs)
	return nil
}

// apply turns the feed of mailbox id since b.modseq (cs) into events of
// the changes that are not this handle's own, and moves b past them. The
// events go out in modseq order (imapd's tracker takes every change up to
// the last modseq it was given as queued: a message's flags at an older
// modseq after a newer one of another message could reach a client that
// has already been shown it newer), except that new messages keep
// ascending UIDs (a session cannot take a UID below one it has shown): the
// appends are put in UID order in the places the modseq order gives them.
func (b *boxSeen) apply(user string, id uint64, cs *ChangeSet, emit func(storage.Event)) {
	var evs []storage.Event
	add := func(ev storage.Event) { evs = append(evs, ev) }
	top := b.feedUID
	for _, c := range cs.Changed {
		isNew := c.UID > b.feedUID && !b.ownUIDs[c.UID]
		if b.own[c.ModSeq] && !isNew {
			continue
		}
		kind := storage.EventFlags
		if isNew {
			kind = storage.EventAppend
		}
		add(storage.Event{Kind: kind, User: user, MailboxID: id, UID: imap.UID(c.UID), Flags: imapFlags(c.Flags), ModSeq: c.ModSeq})
		top = max(top, c.UID)
	}
	for _, uid := range cs.Vanished {
		top = max(top, uid)
	}
	// Tombstones carry the modseq of their expunge: announce those not ours.
	for _, v := range cs.vanishedSeqs {
		if !b.own[v.ModSeq] {
			add(storage.Event{Kind: storage.EventExpunge, User: user, MailboxID: id, UID: imap.UID(v.UID), ModSeq: v.ModSeq})
		}
	}
	emitInModSeqOrder(evs, emit)
	b.modseq = cs.HighestModSeq
	b.feedUID = top
	for m := range b.own {
		if m <= b.modseq {
			delete(b.own, m)
		}
	}
	for u := range b.ownUIDs {
		if u <= b.feedUID {
			delete(b.ownUIDs, u)
		}
	}
}

// emitInModSeqOrder hands evs to emit in modseq order, the appends among
// them in UID order in the places that order gives them (see apply).
func emitInModSeqOrder(evs []storage.Event, emit func(storage.Event)) {
	slices.SortStableFunc(evs, func(x, y storage.Event) int { return cmp.Compare(x.ModSeq, y.ModSeq) })
	var appends []storage.Event
	for _, ev := range evs {
		if ev.Kind == storage.EventAppend {
			appends = append(appends, ev)
		}
	}
	slices.SortFunc(appends, func(x, y storage.Event) int { return cmp.Compare(x.UID, y.UID) })
	for _, ev := range evs {
		if ev.Kind == storage.EventAppend {
			ev, appends = appends[0], appends[1:]
		}
		emit(ev)
	}
}

// queueWindow is how far below the highest queue ID seen a catch-up looks
// for entries committed late.
const queueWindow = 1000

func imapFlags(fs []string) []imap.Flag {
	out := make([]imap.Flag, len(fs))
	for i, f := range fs {
		out[i] = imap.Flag(f)
	}
	return out
}

// beforeOwnCommit runs (commitMu held) just before this handle commits
// evs in tx. A mailbox the commit changes (appends, flags, expunges) whose
// modseq jumped past what the watch announced, by more than this handle's
// own changes, had another node's commit in between: that node's UIDs and
// modseqs are lower than this commit's (the mailbox row lock orders them),
// so its changes are read here, inside tx, and announced first. A session
// would otherwise be told of this commit's higher UID and could no longer
// take the lower one, or be told a message's newer flags and MODSEQ and
// then the older ones (RFC 7162 has a MODSEQ only grow; imaptest's stress
// mode over two nodes caught it). It
// returns the events to hand out before the commit's own; the watch's
// state is left as it was (the events are announced again by no one: the
// caller records them with the commit's own, see publish).
func (w *watch) beforeOwnCommit(ctx context.Context, tx pgx.Tx, evs []storage.Event) ([]storage.Event, error) {
	minOwn := map[uint64]uint64{}
	for _, ev := range evs {
		switch ev.Kind {
		case storage.EventAppend, storage.EventFlags, storage.EventExpunge:
		default:
			continue
		}
		if ev.ModSeq == 0 || ev.MailboxID == 0 {
			continue
		}
		if m, ok := minOwn[ev.MailboxID]; !ok || ev.ModSeq < m {
			minOwn[ev.MailboxID] = ev.ModSeq
		}
	}
	var out []storage.Event
	for id, first := range minOwn {
		b := w.boxes[id]
		if b == nil || first <= b.modseq+1 {
			continue
		}
		ours := uint64(0)
		for m := range b.own {
			if m > b.modseq && m < first {
				ours++
			}
		}
		if first-1-b.modseq <= ours {
			continue // every modseq in between is ours: no other node's
		}
		cs, err := changesIn(ctx, tx, int64(id), b.modseq)
		if err != nil {
			return nil, err
		}
		// This commit's own changes are in tx's view: skip them.
		mine := &boxSeen{user: b.user, modseq: b.modseq, feedUID: b.feedUID, own: maps.Clone(b.own), ownUIDs: maps.Clone(b.ownUIDs)}
		for _, ev := range evs {
			if ev.MailboxID != id || ev.ModSeq == 0 {
				continue
			}
			mine.own[ev.ModSeq] = true
			if ev.Kind == storage.EventAppend {
				mine.ownUIDs[uint64(ev.UID)] = true
			}
		}
		var theirs []storage.Event
		mine.apply(b.user, id, cs, func(ev storage.Event) { theirs = append(theirs, ev) })
		// Only what happened before this commit's first change: the rest
		// is this commit's (skipped) or comes later through the watch.
		for _, ev := range theirs {
			if ev.ModSeq < first {
				out = append(out, ev)
			}
		}
	}
	return out, nil
}

// SyncMailbox implements storage.Syncer: it reads the mailbox's feed now,
// as a hint naming it would, and announces what other nodes changed in it
// before returning. Before the watch has started (no Listen yet) or read
// its first state, there is nothing to announce against.
func (s *pgStore) SyncMailbox(ctx context.Context, mailboxID uint64) error {
	w := s.watch.Load()
	if w == nil || !w.primed.Load() {
		return nil
	}
	return s.catchUp(ctx, w, true, &catchUpScope{boxes: []int64{int64(mailboxID)}})
}
