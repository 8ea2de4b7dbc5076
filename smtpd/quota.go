package smtpd

import (
	"context"

	"github.com/emersion/go-smtp"
)

// The quota at delivery (`[message_server] quota`, storage.Store.Quota):
// it is checked per recipient at RCPT, so a full mailbox fails only that
// recipient (452 4.2.2, which the client may retry later) and the message
// still reaches the others. The check takes the size MAIL FROM announced
// (SIZE=, RFC 1870) when there is one: a recipient whose usage plus that
// size passes the quota is refused, and so is one whose usage has reached
// it. A message without a SIZE= may take a mailbox past its quota once;
// after that the recipient is refused. The sender's Sent copy counts in
// the sender's usage but never stops a sending: refusing mail because the
// sender's own Sent folder is full would surprise more than it helps, and
// the sender's APPEND and COPY are refused meanwhile.

var errOverQuota = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2},
	Message: "Mailbox full: the recipient is over their storage quota; try again later"}

// checkQuota refuses a local recipient whose mailbox cannot take size
// more bytes.
func (s *Server) checkQuota(ctx context.Context, rcpt string, size int64) error {
	quota := s.opts.Store.Quota()
	if quota <= 0 {
		return nil
	}
	used, err := s.opts.Store.Usage(ctx, rcpt)
	if err != nil {
		s.log.Error("smtp recipient usage lookup failed", "rcpt", rcpt, "err", err)
		return errTemporary
	}
	if used >= quota || used+max(size, 0) > quota {
		return errOverQuota
	}
	return nil
}
