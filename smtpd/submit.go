package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/emersion/go-smtp"
)

// Submit submits one message from user as the submission port does after
// AUTH: the same MAIL FROM, RCPT and DATA steps of the same session code,
// so the web interface's send gets the same From rule, routing, size and
// recipient limits, header edits, intake checks, Sent copy, read tracking
// and queue. client names the submitter in the Received field (like a
// HELO) and remote is its address. A refusal is the *smtp.SMTPError an
// SMTP client would have been answered with.
func (s *Server) Submit(ctx context.Context, user, client string, remote netip.Addr, rcpts []string, raw []byte) error {
	if len(rcpts) == 0 {
		return errNoRecipients
	}
	if len(rcpts) > s.opts.MaxRecipients {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
			Message: fmt.Sprintf("Maximum limit of %d recipients reached", s.opts.MaxRecipients)}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("smtpd: submit: %w", err)
	}
	se := &session{srv: s, kind: kindSubmission, user: user, submitter: client, remote: remote}
	defer se.Reset()
	if err := se.Mail(user, nil); err != nil {
		return err
	}
	for _, to := range rcpts {
		if err := se.Rcpt(to, nil); err != nil {
			return err
		}
	}
	if int64(len(raw)) > s.opts.MaxMessageSize {
		reply, _ := se.readError(smtp.ErrDataTooLarge)
		return reply
	}
	return se.Data(bytes.NewReader(raw))
}

// IsRefusal reports whether err is a reply Submit's caller should show the
// user (a refused message), not a server failure.
func IsRefusal(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}
