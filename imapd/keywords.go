package imapd

import (
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// Keywords in FLAGS (RFC 3501 7.2.6): SELECT announces the system flags
// and the keywords known to be in use in the mailbox, and every session
// that has it selected gets an updated "* FLAGS" when a new keyword
// appears. PERMANENTFLAGS holds \* (any keyword may be set).
//
// The keywords in use are learned, not scanned for at SELECT (which would
// cost a read of every message's flags on a large mailbox): from the
// storage events (new messages, flag changes), from the messages a session
// loads (FETCH, STORE, SEARCH), and from this session's own STORE. They
// are kept in registry.keywords while no session has the mailbox selected,
// in memory only; a keyword that was removed from every message stays
// announced, which RFC 3501 allows.

// systemFlags are announced in every mailbox.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// isKeyword reports whether f is a keyword rather than a system flag.
func isKeyword(f imap.Flag) bool { return f != "" && !strings.HasPrefix(string(f), `\`) }

// savedKeywords returns what release kept of a mailbox's keywords.
func (r *registry) savedKeywords(key boxKey) []imap.Flag {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keywords[key]
}

// keepKeywords saves the keywords of a box being freed. Caller holds r.mu.
func (r *registry) keepKeywords(box *sharedMailbox) {
	box.mu.Lock()
	defer box.mu.Unlock()
	if box.loaded && len(box.keywords) > 0 {
		r.keywords[box.key] = box.keywords
	}
}

// mailboxFlagsLocked is the FLAGS list. Caller holds box.mu.
func (box *sharedMailbox) mailboxFlagsLocked() []imap.Flag {
	return append(slices.Clone(systemFlags), box.keywords...)
}

// mailboxFlags is mailboxFlagsLocked for a caller without the lock.
func (box *sharedMailbox) mailboxFlags() []imap.Flag {
	box.mu.Lock()
	defer box.mu.Unlock()
	return box.mailboxFlagsLocked()
}

// learnKeywordsLocked adds the keywords of flags not known yet and tells
// every attached session the new FLAGS. Caller holds box.mu.
func (box *sharedMailbox) learnKeywordsLocked(flags []imap.Flag) {
	added := false
	for _, f := range flags {
		if !isKeyword(f) || slices.ContainsFunc(box.keywords, func(k imap.Flag) bool { return strings.EqualFold(string(k), string(f)) }) {
			continue
		}
		box.keywords = append(slices.Clip(box.keywords), f)
		added = true
	}
	if added && box.tracker != nil {
		box.tracker.QueueMailboxFlags(box.mailboxFlagsLocked())
		box.wakeLocked(nil)
	}
}

// learnKeywords is learnKeywordsLocked for loaded messages.
func (box *sharedMailbox) learnKeywords(msgs []*storage.Message) {
	box.mu.Lock()
	defer box.mu.Unlock()
	for _, m := range msgs {
		box.learnKeywordsLocked(m.Flags)
	}
}

// learnStoredKeywords is learnKeywordsLocked for a session's own STORE.
func (box *sharedMailbox) learnStoredKeywords(flags []imap.Flag) {
	box.mu.Lock()
	defer box.mu.Unlock()
	box.learnKeywordsLocked(flags)
}
