package protocol

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
)

// MailboxTracker is the shared state of one selected mailbox: its message
// count and the sessions that have it selected. Updates are queued to
// every session's SessionTracker and reach each client when its session
// polls, so an expunge renumbers another session's messages only once that
// client has been told. Safe for concurrent use; queueing never blocks.
type MailboxTracker struct {
	mu          sync.Mutex
	numMessages uint32
	sessions    map[*SessionTracker]struct{}
	// published is the mailbox modseq up to which every change has been
	// queued (Published); see SessionTracker.Told.
	published atomic.Uint64
}

// Published records that the updates of every change up to the mailbox's
// modseq have been queued. Changes must be reported in modseq order (the
// order of their commits), after their updates.
func (t *MailboxTracker) Published(modseq uint64) {
	for {
		old := t.published.Load()
		if modseq <= old || t.published.CompareAndSwap(old, modseq) {
			return
		}
	}
}

// NewMailboxTracker tracks a mailbox of numMessages messages.
func NewMailboxTracker(numMessages uint32) *MailboxTracker {
	return &MailboxTracker{numMessages: numMessages, sessions: make(map[*SessionTracker]struct{})}
}

// NewSession attaches a session, whose client knows the current count.
func (t *MailboxTracker) NewSession() *SessionTracker {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := &SessionTracker{box: t, known: t.numMessages}
	t.sessions[st] = struct{}{}
	return st
}

// update is one change, in the server's numbering at the time it happened.
type update struct {
	expunge   uint32   // sequence number removed
	expunged  imap.UID // its UID, if known (VANISHED, RFC 7162)
	modseq    uint64   // of a flags update (MODSEQ), if known
	exists    uint32   // new message count
	before    uint32   // message count before an exists update
	flags     []imap.Flag
	flagsSeq  uint32
	flagsUID  imap.UID
	boxFlags  []imap.Flag
	isFlags   bool
	isBoxFlag bool
}

func (t *MailboxTracker) queue(u update, source *SessionTracker) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case u.expunge != 0:
		if u.expunge > t.numMessages {
			return // not a message of this mailbox: nothing to tell
		}
	case u.exists != 0:
		if u.exists <= t.numMessages {
			return
		}
		u.before = t.numMessages
	}
	for st := range t.sessions {
		if st != source {
			st.push(u)
		}
	}
	switch {
	case u.expunge != 0:
		t.numMessages--
	case u.exists != 0:
		t.numMessages = u.exists
	}
}

// QueueExpunge tells every session that message seqNum is gone.
func (t *MailboxTracker) QueueExpunge(seqNum uint32) {
	if seqNum != 0 {
		t.queue(update{expunge: seqNum}, nil)
	}
}

// QueueExpungeUID is QueueExpunge for a message whose UID is known, which
// QRESYNC clients are told of as VANISHED (RFC 7162 3.2.10).
func (t *MailboxTracker) QueueExpungeUID(seqNum uint32, uid imap.UID) {
	if seqNum != 0 {
		t.queue(update{expunge: seqNum, expunged: uid}, nil)
	}
}

// QueueMessageFlagsModSeq is QueueMessageFlags with the message's new
// modseq, which CONDSTORE clients get as MODSEQ.
func (t *MailboxTracker) QueueMessageFlagsModSeq(seqNum uint32, uid imap.UID, flags []imap.Flag, modseq uint64, source *SessionTracker) {
	t.queue(update{flagsSeq: seqNum, flagsUID: uid, flags: flags, modseq: modseq, isFlags: true}, source)
}

// QueueNumMessages tells every session that the mailbox now holds n
// messages (more than before).
func (t *MailboxTracker) QueueNumMessages(n uint32) { t.queue(update{exists: n}, nil) }

// QueueMailboxFlags tells every session the mailbox's FLAGS changed.
func (t *MailboxTracker) QueueMailboxFlags(flags []imap.Flag) {
	t.queue(update{boxFlags: flags, isBoxFlag: true}, nil)
}

// QueueMessageFlags tells every session but source the flags of a message.
func (t *MailboxTracker) QueueMessageFlags(seqNum uint32, uid imap.UID, flags []imap.Flag, source *SessionTracker) {
	t.queue(update{flagsSeq: seqNum, flagsUID: uid, flags: flags, isFlags: true}, source)
}

// SessionTracker is one session's view of a tracked mailbox: the updates
// its client has not been told yet, and the translation between the
// client's sequence numbers and the server's current ones.
type SessionTracker struct {
	box *MailboxTracker

	mu      sync.Mutex
	pending []update
	known   uint32 // messages the client knows of
	// pendingFlags counts the flags updates with a modseq in pending;
	// told holds, while there are any, the modseq of the state each
	// message was last shown in by the session itself (Told).
	pendingFlags int
	told         map[imap.UID]uint64
}

func (st *SessionTracker) push(u update) {
	st.mu.Lock()
	st.pending = append(st.pending, u)
	if u.isFlags && u.modseq != 0 {
		st.pendingFlags++
	}
	st.mu.Unlock()
}

// Told records that the session itself has just shown the client message
// uid as of modseq (a FETCH response with its FLAGS or MODSEQ: FETCH,
// STORE, a resync). A queued flags update of that message from that modseq
// or an older one is then stale and is dropped instead of written after
// it: the client would see the message's MODSEQ go back (RFC 7162 3.1.2
// has it only grow) and its FLAGS return to an older state.
//
// The stale updates are those queued already and, when the change the
// session read has not been published yet (storage commits a batch of
// writes before it publishes their events), those still to come: the
// record is kept until Published passes modseq. At most maxTold are kept;
// beyond that a stale update can again go out late.
func (st *SessionTracker) Told(uid imap.UID, modseq uint64) {
	if st == nil || modseq == 0 {
		return
	}
	inFlight := modseq > st.box.published.Load()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pendingFlags == 0 && !inFlight {
		return // nothing queued or to come that it could be newer than
	}
	if st.told == nil {
		st.told = make(map[imap.UID]uint64)
	}
	if old, ok := st.told[uid]; ok || len(st.told) < maxTold {
		st.told[uid] = max(old, modseq)
	}
}

// maxTold bounds the messages a session remembers for Told.
const maxTold = 100000

// dropStaleLocked removes the flags updates Told made stale (st.mu held).
func (st *SessionTracker) dropStaleLocked() {
	if len(st.told) == 0 {
		return
	}
	keep := st.pending[:0]
	for _, u := range st.pending {
		if u.isFlags && u.modseq != 0 && u.modseq <= st.told[u.flagsUID] {
			st.pendingFlags--
			continue
		}
		keep = append(keep, u)
	}
	clear(st.pending[len(keep):])
	st.pending = keep
	// Every update up to published is queued and has been filtered.
	published := st.box.published.Load()
	maps.DeleteFunc(st.told, func(_ imap.UID, m uint64) bool { return m <= published })
	if len(st.told) == 0 {
		st.told = nil
	}
}

// Close detaches the session.
func (st *SessionTracker) Close() {
	st.box.mu.Lock()
	delete(st.box.sessions, st)
	st.box.mu.Unlock()
}

// Poll writes the pending updates in order. Without allowExpunge it stops
// at the first expunge (RFC 9051 7.5.1: not during FETCH, STORE, SEARCH),
// since what follows is numbered after it.
func (st *SessionTracker) Poll(w *UpdateWriter, allowExpunge bool) error {
	return st.poll(w, allowExpunge, nil)
}

// Shown is a message's state as a poll just wrote it.
type Shown struct {
	ModSeq uint64
	Flags  []imap.Flag
}

// PollShown is Poll, also returning the state of each message whose flags
// it wrote with a MODSEQ (nil when none): a FETCH that loaded those
// messages before must not then show an older state of them (RFC 7162
// 3.1.2).
func (st *SessionTracker) PollShown(w *UpdateWriter, allowExpunge bool) (map[imap.UID]Shown, error) {
	shown := map[imap.UID]Shown{}
	if err := st.poll(w, allowExpunge, shown); err != nil {
		return nil, err
	}
	if len(shown) == 0 {
		return nil, nil
	}
	return shown, nil
}

// updateSink is what Poll writes to: an *UpdateWriter, or a test's
// recorder.
type updateSink interface {
	WriteExpunge(seq uint32) error
	WriteNumMessages(n uint32) error
	WriteMailboxFlags(flags []imap.Flag) error
	WriteMessageFlags(seq uint32, uid imap.UID, flags []imap.Flag) error
}

// modSeqSink is an updateSink that knows of RFC 7162: UpdateWriter.
type modSeqSink interface {
	writeExpungeUIDs(run []update) error
	writeMessageFlagsModSeq(seq uint32, uid imap.UID, flags []imap.Flag, modseq uint64) error
}

func (st *SessionTracker) poll(w updateSink, allowExpunge bool, shown map[imap.UID]Shown) error {
	st.mu.Lock()
	st.dropStaleLocked()
	n := len(st.pending)
	if !allowExpunge {
		for i, u := range st.pending {
			if u.expunge != 0 {
				n = i
				break
			}
		}
	}
	todo := st.pending[:n:n]
	st.pending = st.pending[n:]
	if len(st.pending) > 0 {
		// Held back behind an expunge: a mailbox FLAGS update renumbers
		// nothing and only ever adds keywords, so the last one goes out
		// now, and the earlier ones are superseded by it. A FETCH that
		// shows a new keyword must announce it first (RFC 3501 7.2.6),
		// even while expunges wait (imaptest's stress mode caught one).
		last := -1
		for i, u := range st.pending {
			if u.isBoxFlag {
				last = i
			}
		}
		if last >= 0 {
			todo = append(todo, st.pending[last])
			st.pending = slices.DeleteFunc(st.pending, func(u update) bool { return u.isBoxFlag })
		}
	}
	if len(st.pending) == 0 {
		st.pending = nil
	}
	for _, u := range todo {
		switch {
		case u.expunge != 0:
			st.known--
		case u.exists != 0:
			st.known = u.exists
		case u.isFlags && u.modseq != 0:
			st.pendingFlags--
		}
	}
	st.mu.Unlock()
	todo = expungesFirst(todo)

	for i := 0; i < len(todo); i++ {
		u := todo[i]
		var err error
		switch {
		case u.expunge != 0:
			if mw, ok := w.(modSeqSink); ok && u.expunged != 0 {
				// A run of expunges is one VANISHED for a QRESYNC client.
				run := []update{u}
				for i+1 < len(todo) && todo[i+1].expunge != 0 && todo[i+1].expunged != 0 {
					i++
					run = append(run, todo[i])
				}
				err = mw.writeExpungeUIDs(run)
			} else {
				err = w.WriteExpunge(u.expunge)
			}
		case u.exists != 0:
			err = w.WriteNumMessages(u.exists)
		case u.isBoxFlag:
			err = w.WriteMailboxFlags(u.boxFlags)
		case u.isFlags:
			// Numbered when queued; expunges before it were written first.
			if shown != nil && u.modseq > shown[u.flagsUID].ModSeq {
				shown[u.flagsUID] = Shown{ModSeq: u.modseq, Flags: u.flags}
			}
			if mw, ok := w.(modSeqSink); ok && u.modseq != 0 {
				err = mw.writeMessageFlagsModSeq(u.flagsSeq, u.flagsUID, u.flags, u.modseq)
			} else {
				err = w.WriteMessageFlags(u.flagsSeq, u.flagsUID, u.flags)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// DecodeSeqNum turns the client's sequence number into the server's
// current one; 0 if the message was expunged since (and the client not yet
// told) or the client does not know that number.
func (st *SessionTracker) DecodeSeqNum(seq uint32) uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if seq == 0 || seq > st.known {
		return 0
	}
	for _, u := range st.pending {
		if u.expunge == 0 {
			continue
		}
		if seq == u.expunge {
			return 0
		}
		if seq > u.expunge {
			seq--
		}
	}
	return seq
}

// EncodeSeqNum turns the server's current sequence number into the
// client's; 0 if the client has not been told of that message yet.
func (st *SessionTracker) EncodeSeqNum(seq uint32) uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if seq == 0 {
		return 0
	}
	for i := len(st.pending) - 1; i >= 0; i-- {
		u := st.pending[i]
		switch {
		case u.exists != 0:
			if seq > u.before {
				return 0
			}
		case u.expunge != 0:
			if seq >= u.expunge {
				seq++
			}
		}
	}
	if seq > st.known {
		return 0
	}
	return seq
}

// expungesFirst rewrites, in updates about to be written, an EXISTS
// followed by expunges of messages the client already knew as those
// expunges followed by the smaller EXISTS. The client ends with the same
// messages under the same numbers either way (the new messages are the
// last, so they do not renumber the old ones), but a MOVE into the
// selected mailbox itself then reads as RFC 6851 and imaptest expect: the
// original goes, then the copy arrives ("* 1 EXPUNGE", "* 1 EXISTS"),
// rather than a moment with both ("* 2 EXISTS", "* 1 EXPUNGE"). todo is
// rewritten in place.
func expungesFirst(todo []update) []update {
	for i := 0; i+1 < len(todo); i++ {
		ex := todo[i]
		if ex.exists == 0 {
			continue
		}
		// todo[i+1+j] is numbered after j expunges: the old messages are
		// 1..ex.before-j there.
		k := 0
		for i+1+k < len(todo) {
			u := todo[i+1+k]
			if u.expunge == 0 || u.expunge > ex.before-uint32(k) {
				break
			}
			k++
		}
		if k == 0 {
			continue
		}
		copy(todo[i:i+k], todo[i+1:i+1+k])
		ex.exists -= uint32(k)
		ex.before -= uint32(k)
		todo[i+k] = ex
		i += k
	}
	return todo
}
