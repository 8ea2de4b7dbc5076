package imapd

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

type boxKey struct {
	user string
	id   uint64
}

// registry holds the shared state of every mailbox that at least one session
// has selected, and turns storage events into tracker updates.
type registry struct {
	srv *Server

	mu     sync.Mutex
	boxes  map[boxKey]*sharedMailbox
	recent map[boxKey]imap.UID // \Recent floors of unselected mailboxes (recent.go)
	// keywords of unselected mailboxes (keywords.go)
	keywords map[boxKey][]imap.Flag
}

// sharedMailbox is the server's view of one selected mailbox: its ascending
// UID list (sequence number n is uids[n-1]) and the MailboxTracker that
// tells each session's SessionTracker what changed.
type sharedMailbox struct {
	key boxKey
	// ready is closed once the UID list is loaded or loading failed.
	ready   chan struct{}
	loadErr error // written before ready is closed

	refs int // sessions holding the box; guarded by registry.mu

	mu       sync.Mutex
	loaded   bool
	pending  []storage.Event // appends and expunges seen while loading
	uids     []imap.UID
	maxUID   imap.UID // highest UID ever in uids; never decreases
	tracker  *protocol.MailboxTracker
	sessions map[*session]*attachment
	// recentFloor and attached: see recent.go.
	recentFloor imap.UID
	attached    uint64
	keywords    []imap.Flag  // in use, as far as known (keywords.go)
	subjects    subjectCache // SEARCH SUBJECT's values (subjects.go)
}

func newRegistry(srv *Server) *registry {
	return &registry{srv: srv, boxes: make(map[boxKey]*sharedMailbox), recent: make(map[boxKey]imap.UID),
		keywords: make(map[boxKey][]imap.Flag)}
}

// acquire returns the shared state of a mailbox, loading its UID list if no
// session has it selected yet. The caller must attach to it and later
// release it.
//
// The state is registered before the UIDs are loaded, so events committed
// while loading are buffered rather than lost; they are then applied
// idempotently (an append at or below the last loaded UID, or an expunge of
// a UID not in the list, was already part of what was loaded).
func (r *registry) acquire(ctx context.Context, user string, id uint64) (*sharedMailbox, error) {
	key := boxKey{user: user, id: id}
	r.mu.Lock()
	box := r.boxes[key]
	created := box == nil
	if created {
		box = &sharedMailbox{
			key:      key,
			ready:    make(chan struct{}),
			sessions: make(map[*session]*attachment),
		}
		r.boxes[key] = box
	}
	box.refs++
	r.mu.Unlock()

	if created {
		r.load(ctx, box)
	}
	select {
	case <-box.ready:
	case <-ctx.Done():
		r.release(box)
		return nil, ctx.Err()
	}
	if box.loadErr != nil {
		r.release(box)
		return nil, box.loadErr
	}
	return box, nil
}

func (r *registry) load(ctx context.Context, box *sharedMailbox) {
	uids, err := r.srv.store.UIDs(ctx, box.key.user, box.key.id)
	if err != nil {
		// Forget the failed state so that the next SELECT tries again.
		r.mu.Lock()
		if r.boxes[box.key] == box {
			delete(r.boxes, box.key)
		}
		r.mu.Unlock()
		box.mu.Lock()
		box.pending = nil
		box.loadErr = fmt.Errorf("load UIDs of mailbox %d: %w", box.key.id, err)
		box.mu.Unlock()
		close(box.ready)
		return
	}
	floor, keywords := r.savedRecentFloor(box.key), r.savedKeywords(box.key)
	box.mu.Lock()
	defer close(box.ready)
	defer box.mu.Unlock()
	box.recentFloor, box.keywords = floor, keywords
	box.uids = uids
	if n := len(uids); n > 0 {
		box.maxUID = uids[n-1]
	}
	for _, ev := range box.pending {
		box.applyLocked(ev)
	}
	box.pending = nil
	box.tracker = protocol.NewMailboxTracker(uint32(len(box.uids)))
	box.loaded = true
}

// release drops one session's hold; the state is freed with the last one.
func (r *registry) release(box *sharedMailbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	box.refs--
	if box.refs == 0 && r.boxes[box.key] == box {
		r.keepRecentFloor(box)
		r.keepKeywords(box)
		delete(r.boxes, box.key)
	}
}

// attachment is one session's link to a shared mailbox.
type attachment struct {
	tracker *protocol.SessionTracker
	// wake gets a token after every update queued to tracker. IDLE waits
	// on it rather than on SessionTracker.Idle, which only wakes for
	// updates queued after it starts and so would sit on updates queued
	// between the last poll and the IDLE command.
	wake chan struct{}
	// readWrite, order and recent (this session's \Recent UIDs,
	// ascending): see recent.go. Guarded by the box's mu.
	readWrite bool
	order     uint64
	recent    []imap.UID
}

// attach gives a session its tracker and the message count its view starts
// with; both are taken under the box lock, so no event falls between them.
func (box *sharedMailbox) attach(s *session) (a *attachment, numMessages uint32, maxUID imap.UID) {
	box.mu.Lock()
	defer box.mu.Unlock()
	box.attached++
	a = &attachment{tracker: box.tracker.NewSession(), wake: make(chan struct{}, 1), order: box.attached}
	box.sessions[s] = a
	return a, uint32(len(box.uids)), box.maxUID
}

// detach undoes attach and releases the session's hold on the box.
func (r *registry) detach(box *sharedMailbox, s *session) {
	func() {
		box.mu.Lock()
		defer box.mu.Unlock()
		if a := box.sessions[s]; a != nil {
			a.tracker.Close()
			delete(box.sessions, s)
		}
	}()
	r.release(box)
}

// handleEvent is the storage listener. It runs on storage's writer
// goroutine in commit order, so it only takes short locks and queues
// tracker updates (SessionTracker never blocks on a slow client).
func (r *registry) handleEvent(ev storage.Event) {
	defer func() {
		if v := recover(); v != nil {
			r.srv.metrics.Panic()
			r.srv.log.Error("recovered panic applying a storage event",
				"kind", ev.Kind, "user", ev.User, "mailbox", ev.MailboxID, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	key := boxKey{user: ev.User, id: ev.MailboxID}
	r.mu.Lock()
	box := r.boxes[key]
	r.mu.Unlock()
	if box == nil {
		return
	}
	if ev.Kind == storage.EventMailboxes {
		// Creates and renames need nothing; a deleted mailbox must end the
		// sessions that have it selected. Finding out takes a read, which
		// must not happen on the writer goroutine.
		go r.checkDeleted(box, ev.Origin)
		return
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	if !box.loaded {
		if box.loadErr == nil && (ev.Kind == storage.EventAppend || ev.Kind == storage.EventExpunge) {
			box.pending = append(box.pending, ev)
		}
		return
	}
	box.applyLocked(ev)
	if box.tracker != nil {
		// After the change's updates are queued (SessionTracker.Told).
		box.tracker.Published(ev.ModSeq)
	}
}

// applyLocked applies one event to the UID list and queues the matching
// tracker update. It is idempotent for appends and expunges.
func (box *sharedMailbox) applyLocked(ev storage.Event) {
	switch ev.Kind {
	case storage.EventAppend:
		if ev.UID <= box.maxUID {
			return
		}
		box.uids = append(box.uids, ev.UID)
		box.maxUID = ev.UID
		box.newRecentLocked(ev.UID)
		box.learnKeywordsLocked(ev.Flags)
		if box.tracker != nil {
			box.tracker.QueueNumMessages(uint32(len(box.uids)))
		}
	case storage.EventExpunge:
		i, ok := slices.BinarySearch(box.uids, ev.UID)
		if !ok {
			return
		}
		box.uids = slices.Delete(box.uids, i, i+1)
		if box.tracker != nil {
			box.tracker.QueueExpungeUID(uint32(i+1), ev.UID)
		}
	case storage.EventFlags:
		if box.tracker == nil {
			return
		}
		box.learnKeywordsLocked(ev.Flags)
		i, ok := slices.BinarySearch(box.uids, ev.UID)
		if !ok {
			return
		}
		// The session that made the change writes its own FETCH response;
		// echoing the update would repeat it.
		var source *attachment
		var sourceTracker *protocol.SessionTracker
		if source = box.attachmentOf(ev.Origin); source != nil {
			sourceTracker = source.tracker
		}
		flags := slices.Clone(ev.Flags)
		if flags == nil {
			flags = []imap.Flag{}
		}
		box.tracker.QueueMessageFlagsModSeq(uint32(i+1), ev.UID, flags, ev.ModSeq, sourceTracker)
		box.wakeLocked(source)
	default:
		return
	}
	if ev.Kind != storage.EventFlags {
		box.wakeLocked(nil)
	}
}

// attachmentOf returns the attachment of the session whose writes carry
// origin, or nil (box.mu held; a mailbox has a few sessions attached).
func (box *sharedMailbox) attachmentOf(origin storage.Origin) *attachment {
	if origin.IsZero() {
		return nil
	}
	for s, a := range box.sessions {
		if s.origin == origin {
			return a
		}
	}
	return nil
}

// wakeLocked tells every attached session except skip that an update was
// queued for it. It never blocks: one pending token is enough.
func (box *sharedMailbox) wakeLocked(skip *attachment) {
	if box.tracker == nil {
		return
	}
	for _, a := range box.sessions {
		if a == skip {
			continue
		}
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// applyOwn applies the results of a session's own write (the UIDs it
// appended, ascending, or expunged) to the box, so that its EXISTS or
// EXPUNGE responses go out before the tagged OK without waiting for the
// write's events. Applying is idempotent: in one process the events have
// normally been applied already (storage publishes them before it
// answers), and when they come they change nothing. (An append is applied
// only above the highest UID seen, which is right while every write's
// events are published before its answer, as in one process; with writers
// in other processes the session must first catch up from the feed.)
func (box *sharedMailbox) applyOwn(kind storage.EventKind, uids []imap.UID) {
	box.mu.Lock()
	defer box.mu.Unlock()
	for _, uid := range uids {
		ev := storage.Event{Kind: kind, User: box.key.user, MailboxID: box.key.id, UID: uid}
		if !box.loaded {
			if box.loadErr == nil {
				box.pending = append(box.pending, ev)
			}
			continue
		}
		box.applyLocked(ev)
	}
}

// checkDeleted ends the sessions (except origin, whose own DELETE it was)
// that have box selected if the mailbox no longer exists.
func (r *registry) checkDeleted(box *sharedMailbox, origin storage.Origin) {
	mailboxes, err := r.srv.store.Mailboxes(r.srv.ctx, box.key.user)
	if errors.Is(err, storage.ErrNotFound) {
		// The user is gone, and the mailbox with them.
		mailboxes, err = nil, nil
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, storage.ErrClosed) {
			r.srv.log.Warn("checking for a deleted mailbox", "user", box.key.user, "err", err)
		}
		return
	}
	for _, mb := range mailboxes {
		if mb.ID == box.key.id {
			return
		}
	}
	var victims []*session
	func() {
		box.mu.Lock()
		defer box.mu.Unlock()
		for s := range box.sessions {
			if origin.IsZero() || s.origin != origin {
				victims = append(victims, s)
			}
		}
	}()
	for _, s := range victims {
		go s.conn.Bye("The selected mailbox was deleted")
	}
}
