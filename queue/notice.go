package queue

// The mail the queue writes itself: delivery status notifications to
// senders (RFC 3464 inside an RFC 6522 multipart/report) and alerts to the
// admins. They come from the postmaster and are stored straight into
// INBOXes through the store, never relayed.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/pochta/pochta/storage"
)

// Subjects of the alerts (SPEC.md "Queue": the subjects begin with these).
const (
	SubjectRelayDown           = "Mail relay is down"
	SubjectRelayBack           = "Mail relay is back online"
	SubjectRelaySettings       = "Cannot connect to the mail relay"
	SubjectSystemLimit         = "Daily system e-mail limit reached"
	SubjectUserLimit           = "Daily e-mail limit reached"
	SubjectPrefixDelayed       = "Delayed: "
	SubjectPrefixUndeliverable = "Undeliverable: "
)

// maxOriginalHeader bounds the original header carried in a notice.
const maxOriginalHeader = 64 << 10

// noticeRecipients: user mail's notices go to its sender, system mail's
// to the admins.
func (q *Queue) noticeRecipients(e *storage.QueueEntry) []string {
	if e.Source == storage.SourceUser && e.User != "" {
		return []string{e.User}
	}
	return q.opt().Admins
}

// header writes the fields every message of ours has. Return-Path is
// empty: automatic mail must not cause more automatic mail (RFC 3834).
func (q *Queue) header(buf *bytes.Buffer, from string, to []string, subject string, now time.Time, autoSubmitted string) {
	fmt.Fprintf(buf, "Return-Path: <>\r\n")
	fmt.Fprintf(buf, "From: %s\r\n", from)
	fmt.Fprintf(buf, "To: %s\r\n", strings.Join(to, ", "))
	fmt.Fprintf(buf, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", headerText(subject)))
	fmt.Fprintf(buf, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(buf, "Message-ID: <%s@%s>\r\n", rand.Text(), q.opt().Hostname)
	fmt.Fprintf(buf, "Auto-Submitted: %s\r\n", autoSubmitted)
	fmt.Fprintf(buf, "MIME-Version: 1.0\r\n")
}

// headerText makes s safe for one unstructured header field.
func headerText(s string) string {
	s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}

// alert is a plain-text message from the postmaster.
func (q *Queue) alert(to []string, subject, text string, now time.Time) *storage.Notice {
	if len(to) == 0 {
		return nil
	}
	var buf bytes.Buffer
	q.header(&buf, "pochta <"+q.opt().Postmaster+">", to, subject, now, "auto-generated")
	buf.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&buf)
	qp.Write([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	qp.Close()
	return &storage.Notice{Recipients: to, Message: &storage.NewMessage{Raw: buf.Bytes(), InternalDate: now}}
}

func (q *Queue) relayAlert(state, detail string) *storage.Notice {
	now := q.now()
	switch state {
	case relayDown:
		return q.alert(q.opt().Admins, SubjectRelayDown, fmt.Sprintf(
			"pochta cannot reach the mail relay %s:\n\n    %s\n\n"+
				"Mail for other domains waits in the queue; no delivery attempt is spent while\n"+
				"the relay is down. pochta checks the relay every %s and will tell you\n"+
				"when it answers again.\n\n"+
				"Waiting mail: pochta queue list --status outbox\n",
			q.opt().Relay, detail, q.opt().HealthCheckInterval), now)
	case relaySettings:
		return q.alert(q.opt().Admins, SubjectRelaySettings, fmt.Sprintf(
			"pochta reaches the mail relay %s, but cannot use it:\n\n    %s\n\n"+
				"This is a settings problem: check relay_tls, relay_username and\n"+
				"relay_password (or relay_password_file) in [email_queue], and the account\n"+
				"at the relay. Outgoing mail waits in the queue meanwhile and no delivery\n"+
				"attempt is spent; pochta tries the relay again every %s.\n",
			q.opt().Relay, detail, q.opt().HealthCheckInterval), now)
	default:
		return q.alert(q.opt().Admins, SubjectRelayBack, fmt.Sprintf(
			"The mail relay %s answers again. pochta is delivering the mail that\n"+
				"waited in the queue.\n", q.opt().Relay), now)
	}
}

func (q *Queue) systemLimitAlert(now, until time.Time) *storage.Notice {
	return q.alert(q.opt().Admins, SubjectSystemLimit, fmt.Sprintf(
		"The server has relayed %d messages to other domains today, its daily\n"+
			"system_limit ([email_limit]). Further outgoing mail is held and goes out\n"+
			"from %s on.\n\n"+
			"Held mail: pochta queue list --status held\n",
		q.opt().SystemLimit, until.Format("2006-01-02 15:04 MST")), now)
}

func (q *Queue) userLimitAlert(user string, now, until time.Time) *storage.Notice {
	return q.alert([]string{user}, SubjectUserLimit, fmt.Sprintf(
		"You have sent %d messages to other domains today, your daily limit.\n"+
			"Your further messages to other domains are kept on the server and sent\n"+
			"automatically from %s on. You do not need to send them again.\n",
		q.opt().UserLimit, until.Format("2006-01-02 15:04 MST")), now)
}

// undeliverable is the notice for recipients that failed for good.
func (q *Queue) undeliverable(orig, e *storage.QueueEntry, failed []storage.QueueRecipient, now time.Time) storage.Notice {
	var text strings.Builder
	text.WriteString("Your message could not be delivered to these recipients:\n\n")
	for _, r := range failed {
		fmt.Fprintf(&text, "    %s\n        %s\n\n", r.Address, r.Reply)
	}
	fmt.Fprintf(&text, "Subject: %s\nQueued:  %s\nAttempts: %d\n\n", headerText(e.Subject), e.Date.Format(time.RFC1123Z), e.Attempts)
	text.WriteString("The answer under each address is the one the mail relay gave. The\n" +
		"header of your message is attached.\n")
	return q.dsn(orig, e, SubjectPrefixUndeliverable, "failed", failed, text.String(), time.Time{}, now)
}

// delayed is the one notice for an entry still failing.
func (q *Queue) delayed(orig, e *storage.QueueEntry, now time.Time) storage.Notice {
	var pending []storage.QueueRecipient
	for _, r := range e.Recipients {
		if r.State == storage.RcptPending {
			pending = append(pending, r)
		}
	}
	until := q.retryUntil(e.Attempts, now)
	var text strings.Builder
	text.WriteString("Your message has not been delivered yet to these recipients:\n\n")
	for _, r := range pending {
		fmt.Fprintf(&text, "    %s\n        %s\n\n", r.Address, r.Reply)
	}
	fmt.Fprintf(&text, "Subject: %s\nQueued:  %s\nAttempts: %d\n\n", headerText(e.Subject), e.Date.Format(time.RFC1123Z), e.Attempts)
	fmt.Fprintf(&text, "This is only a warning: you do not need to send it again. pochta keeps\n"+
		"trying until about %s and tells you if it finally fails.\n", until.Format(time.RFC1123Z))
	return q.dsn(orig, e, SubjectPrefixDelayed, "delayed", pending, text.String(), until, now)
}

// dsn builds a multipart/report; report-type=delivery-status message
// (RFC 6522) with a human-readable part, the message/delivery-status part
// (RFC 3464) and the original header (text/rfc822-headers).
func (q *Queue) dsn(orig, e *storage.QueueEntry, prefix, action string, rcpts []storage.QueueRecipient, text string, retryUntil, now time.Time) storage.Notice {
	to := q.noticeRecipients(e)
	var buf bytes.Buffer
	q.header(&buf, "Mail Delivery System <"+q.opt().Postmaster+">", to, prefix+e.Subject, now, "auto-replied")
	if id := strings.TrimSpace(e.MessageID); id != "" && !strings.ContainsAny(id, "\r\n") {
		fmt.Fprintf(&buf, "In-Reply-To: %s\r\nReferences: %s\r\n", id, id)
	}
	mw := multipart.NewWriter(&buf)
	fmt.Fprintf(&buf, "Content-Type: multipart/report; report-type=delivery-status; boundary=%q\r\n\r\n", mw.Boundary())
	buf.WriteString("This is a delivery status notification in MIME format.\r\n")

	pw, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"quoted-printable"},
	})
	qp := quotedprintable.NewWriter(pw)
	qp.Write([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	qp.Close()

	pw, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"message/delivery-status"}})
	fmt.Fprintf(pw, "Reporting-MTA: dns; %s\r\n", q.opt().Hostname)
	fmt.Fprintf(pw, "Arrival-Date: %s\r\n", e.Date.Format(time.RFC1123Z))
	relayHost, _, err := net.SplitHostPort(q.opt().Relay)
	if err != nil {
		relayHost = q.opt().Relay
	}
	for _, r := range rcpts {
		status := r.Status
		if status == "" {
			status = map[bool]string{true: "5.0.0", false: "4.0.0"}[action == "failed"]
		}
		fmt.Fprintf(pw, "\r\nFinal-Recipient: rfc822; %s\r\n", r.Address)
		fmt.Fprintf(pw, "Action: %s\r\n", action)
		fmt.Fprintf(pw, "Status: %s\r\n", status)
		fmt.Fprintf(pw, "Remote-MTA: dns; %s\r\n", relayHost)
		if isReply(r.Reply) {
			fmt.Fprintf(pw, "Diagnostic-Code: smtp; %s\r\n", r.Reply)
		} else if r.Reply != "" {
			fmt.Fprintf(pw, "X-Pochta-Error: %s\r\n", r.Reply)
		}
		if !e.LastAttempt.IsZero() {
			fmt.Fprintf(pw, "Last-Attempt-Date: %s\r\n", e.LastAttempt.Format(time.RFC1123Z))
		}
		if !retryUntil.IsZero() {
			fmt.Fprintf(pw, "Will-Retry-Until: %s\r\n", retryUntil.Format(time.RFC1123Z))
		}
	}

	hdr := originalHeader(orig.Header)
	ph := textproto.MIMEHeader{"Content-Type": {"text/rfc822-headers"}}
	if !isASCII(string(hdr)) {
		ph.Set("Content-Transfer-Encoding", "8bit")
	}
	pw, _ = mw.CreatePart(ph)
	pw.Write(hdr)
	mw.Close()
	return storage.Notice{Recipients: to, Message: &storage.NewMessage{Raw: buf.Bytes(), InternalDate: now}}
}

// originalHeader is the header section of the relayed message (no Bcc).
func originalHeader(body string) []byte {
	end := strings.Index(body, "\r\n\r\n")
	if end < 0 {
		end = len(body)
	} else {
		end += 2
	}
	end = min(end, maxOriginalHeader)
	h := []byte(body[:end])
	if !bytes.HasSuffix(h, []byte("\r\n")) {
		h = append(h, "\r\n"...)
	}
	return h
}

// isReply reports whether s starts with an SMTP reply code.
func isReply(s string) bool {
	return len(s) >= 4 && s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' && s[3] == ' '
}
