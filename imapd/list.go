package imapd

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// List implements protocol.Session for LIST, LIST-EXTENDED (RFC 5258,
// selection SUBSCRIBED, RECURSIVEMATCH, SPECIAL-USE; return SUBSCRIBED,
// CHILDREN, SPECIAL-USE, STATUS per RFC 5819) and LSUB.
//
// Every response carries \HasChildren or \HasNoChildren (RFC 3348) and the
// mailbox's special-use attribute (RFC 6154), which IMAP4rev1 clients such
// as Outlook read from a plain LIST. A parent that does not exist but has
// children is listed as \Noselect so hierarchies display (RFC 3501 6.3.8).
//
// Subscriptions are by name: a subscribed name whose mailbox was deleted is
// listed by the SUBSCRIBED selection as \Subscribed \NonExistent (RFC 5258
// 3), by LSUB as \Noselect, and counts for a parent's CHILDINFO.
func (s *session) List(w *protocol.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	defer s.guard("LIST", &err)
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 3501 6.3.8).
		return w.WriteList(&imap.ListData{
			Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect},
			Delim: hierarchyDelim,
		})
	}
	mailboxes, err := s.srv.store.Mailboxes(s.ctx, s.user)
	if err != nil {
		return s.storageError("LIST", err)
	}
	// Subscriptions are kept by name (RFC 3501 6.3.6): a name may be
	// subscribed whose mailbox was deleted.
	subscribedNames, err := s.srv.store.Subscriptions(s.ctx, s.user)
	if err != nil {
		return s.storageError("LIST", err)
	}

	byName := make(map[string]*storage.Mailbox, len(mailboxes))
	isSubscribed := make(map[string]bool, len(subscribedNames))
	hasChildren := make(map[string]bool)
	for i := range mailboxes {
		mb := &mailboxes[i]
		byName[mb.Name] = mb
		if mb.Subscribed {
			isSubscribed[mb.Name] = true
		}
		for parent := range ancestors(mb.Name) {
			hasChildren[parent] = true
		}
	}
	for _, name := range subscribedNames {
		isSubscribed[name] = true
	}
	subscribedList := make([]string, 0, len(isSubscribed))
	subscribedBelow := make(map[string]bool) // for RECURSIVEMATCH
	for name := range isSubscribed {
		subscribedList = append(subscribedList, name)
		for parent := range ancestors(name) {
			subscribedBelow[parent] = true
		}
	}
	names := make([]string, 0, len(byName)+len(hasChildren))
	for name := range byName {
		names = append(names, name)
	}
	for name := range hasChildren {
		if byName[name] == nil {
			names = append(names, name)
		}
	}
	if options.SelectSubscribed {
		// RFC 5258 3: a subscribed name without its mailbox is listed
		// (\Subscribed \NonExistent), in LSUB as \Noselect.
		for _, name := range subscribedList {
			if byName[name] == nil && !hasChildren[name] {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)

	for _, name := range names {
		if !matchAny(name, ref, patterns) {
			continue
		}
		mb := byName[name]
		data := &imap.ListData{Mailbox: name, Delim: hierarchyDelim}
		switch {
		case mb == nil && !hasChildren[name] && !w.LSUB():
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		case mb == nil:
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
		}
		if hasChildren[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		subscribed := isSubscribed[name]
		if subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if mb != nil && mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, mb.SpecialUse)
		}

		if options.SelectSubscribed && !subscribed {
			if w.LSUB() && subscribedBelow[name] && !subscribedMatchBelow(name, ref, patterns, subscribedList) {
				// RFC 3501 6.3.9: LSUB "" % with only "a/b" subscribed
				// names "a", as \Noselect.
				data.Attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect}
				if err := w.WriteList(data); err != nil {
					return err
				}
				continue
			}
			if !options.SelectRecursiveMatch || !subscribedBelow[name] || !subscribedUnlistedBelow(name, ref, patterns, subscribedList) {
				continue
			}
			// RFC 5258 3.5: listed for its subscribed children only,
			// and only for those not listed themselves: a CHILDINFO
			// naming children already in the response is redundant.
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if options.SelectSpecialUse && (mb == nil || mb.SpecialUse == "") {
			continue
		}
		if options.ReturnStatus != nil && mb != nil {
			st, err := s.srv.store.MailboxStatus(s.ctx, s.user, name)
			if err != nil {
				return s.storageError("LIST", err)
			}
			if data.Status, err = s.statusData(st, options.ReturnStatus); err != nil {
				return err
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// subscribedMatchBelow reports whether a subscribed mailbox under name
// matches the patterns itself (then LSUB lists it, not its parent).
func subscribedMatchBelow(name, ref string, patterns []string, subscribed []string) bool {
	prefix := name + string(hierarchyDelim)
	for _, sub := range subscribed {
		if strings.HasPrefix(sub, prefix) && matchAny(sub, ref, patterns) {
			return true
		}
	}
	return false
}

// subscribedUnlistedBelow reports whether a subscribed mailbox under name
// does not match the patterns (so only its parent's CHILDINFO tells of it).
func subscribedUnlistedBelow(name, ref string, patterns []string, subscribed []string) bool {
	prefix := name + string(hierarchyDelim)
	for _, sub := range subscribed {
		if strings.HasPrefix(sub, prefix) && !matchAny(sub, ref, patterns) {
			return true
		}
	}
	return false
}

// ancestors yields every proper parent of a hierarchical name: "a/b/c"
// gives "a" and "a/b".
func ancestors(name string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for i := 0; i < len(name); i++ {
			if name[i] == hierarchyDelim && i > 0 {
				if !yield(name[:i]) {
					return
				}
			}
		}
	}
}

// matchAny reports whether any pattern matches. INBOX is case-insensitive
// (RFC 3501 5.1), so "inbox" and "Inb%" find it.
func matchAny(name, ref string, patterns []string) bool {
	for _, pattern := range patterns {
		if protocol.MatchList(name, hierarchyDelim, ref, pattern) {
			return true
		}
		if name == storage.Inbox && ref == "" && protocol.MatchList(name, hierarchyDelim, "", strings.ToUpper(pattern)) {
			return true
		}
	}
	return false
}

// listOne returns the LIST data of one existing mailbox.
func (s *session) listOne(name string) (*imap.ListData, error) {
	mailboxes, err := s.srv.store.Mailboxes(s.ctx, s.user)
	if err != nil {
		return nil, s.storageError("LIST", err)
	}
	data := &imap.ListData{Mailbox: name, Delim: hierarchyDelim}
	children := false
	for _, mb := range mailboxes {
		if strings.HasPrefix(mb.Name, name+string(hierarchyDelim)) {
			children = true
		}
		if mb.Name == name && mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, mb.SpecialUse)
		}
	}
	if children {
		data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
	} else {
		data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
	}
	return data, nil
}
