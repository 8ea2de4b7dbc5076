package imapd

import (
	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
)

// QUOTA (RFC 9208): every user has one quota root, "" (the account), over
// all their mailboxes, with the STORAGE resource: the sum of their
// messages' sizes (storage.Store.Usage) against `[message_server] quota`
// (storage.Store.Quota). APPEND and COPY that would pass it get
// NO [OVERQUOTA] from the store's check; SETQUOTA is refused.

// quotaRoot is the name of the one quota root of a user.
const quotaRoot = ""

var _ protocol.SessionQuota = (*session)(nil)

func (s *session) quotaData() (*protocol.QuotaData, error) {
	used, err := s.srv.store.Usage(s.ctx, s.user)
	if err != nil {
		return nil, s.storageError("GETQUOTA", err)
	}
	return &protocol.QuotaData{Root: quotaRoot, Used: used, Limit: s.srv.store.Quota()}, nil
}

// QuotaRoots implements protocol.SessionQuota.
func (s *session) QuotaRoots(mailbox string) (_ []protocol.QuotaData, err error) {
	defer s.guard("GETQUOTAROOT", &err)
	if _, err := s.srv.store.MailboxStatus(s.ctx, s.user, mailbox); err != nil {
		return nil, s.storageError("GETQUOTAROOT", err)
	}
	q, err := s.quotaData()
	if err != nil {
		return nil, err
	}
	return []protocol.QuotaData{*q}, nil
}

// Quota implements protocol.SessionQuota.
func (s *session) Quota(root string) (_ *protocol.QuotaData, err error) {
	defer s.guard("GETQUOTA", &err)
	if root != quotaRoot {
		return nil, imapNo(imap.ResponseCodeNonExistent, `No such quota root; yours is ""`)
	}
	return s.quotaData()
}
