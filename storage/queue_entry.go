package storage

// The queue entry of a delivery: who it goes to and what the queue shows
// of it, written once for every backend.

import (
	"bufio"
	"bytes"
	"fmt"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// NewQueueEntry is the queue entry (without ID or body) of a delivery's
// external recipients, made inside the delivery's transaction: the
// recipients checked and de-duplicated, grouped into To, Cc and Bcc by
// header (the header of the Sent copy, which still has Bcc), the subject
// and MIME type summarised from it, size the relayed message's bytes.
// ErrInvalid for an address that cannot be relayed, an unknown source or
// no external recipient.
//
// The header is summarised here rather than before the transaction because
// Deliver prepares the copies without it; only the header section is read
// (a few hundred bytes to a few KiB), which keeps the writer's time per
// request small.
func NewQueueEntry(d *Delivery, header []byte, size int64, trackingID uint64, now time.Time) (*QueueEntry, error) {
	if !RelayAddressOK(d.From, true) {
		return nil, fmt.Errorf("envelope sender %q cannot be relayed: %w", d.From, ErrInvalid)
	}
	source := d.Source
	if source == "" {
		source = SourceUser
		if d.Sender == "" {
			source = SourceSystem
		}
	}
	if !slices.Contains(QueueSources, source) {
		return nil, fmt.Errorf("source %q: %w", source, ErrInvalid)
	}
	var rcpts []QueueRecipient
	seen := make(map[string]bool, len(d.External))
	for _, r := range d.External {
		if !RelayAddressOK(r, false) {
			return nil, fmt.Errorf("recipient %q cannot be relayed: %w", r, ErrInvalid)
		}
		if lr := strings.ToLower(r); !seen[lr] {
			seen[lr] = true
			rcpts = append(rcpts, QueueRecipient{Address: r, State: RcptPending})
		}
	}
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("no external recipients: %w", ErrInvalid)
	}
	sum := summarizeHeader(header)
	e := &QueueEntry{
		Status:      QueueOutbox,
		Source:      source,
		User:        strings.ToLower(d.Sender),
		From:        d.From,
		To:          []string{},
		Cc:          []string{},
		Bcc:         []string{},
		Subject:     d.Subject,
		MimeType:    sum.mimeType,
		MessageID:   d.MessageID,
		Date:        now,
		Size:        size,
		NextAttempt: now,
		Recipients:  rcpts,
		TrackingID:  trackingID,
	}
	if e.Subject == "" {
		e.Subject = sum.subject
	}
	for _, r := range rcpts {
		lr := strings.ToLower(r.Address)
		switch {
		case slices.Contains(sum.to, lr):
			e.To = append(e.To, r.Address)
		case slices.Contains(sum.cc, lr):
			e.Cc = append(e.Cc, r.Address)
		default:
			e.Bcc = append(e.Bcc, r.Address)
		}
	}
	return e, nil
}

// RelayAddressOK refuses an address that could break out of an SMTP
// command line: CR, LF and other controls, spaces and angle brackets, no
// "@", longer than 254 bytes; "" only with allowEmpty (a null sender).
// Deliver refuses to queue such an address, and the relay (package queue)
// checks again with this function before it writes one to the upstream.
func RelayAddressOK(a string, allowEmpty bool) bool {
	if a == "" {
		return allowEmpty
	}
	if len(a) > 254 || !strings.Contains(a, "@") {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// headerSummary is what the queue shows of a message's header.
type headerSummary struct {
	to, cc, bcc []string // lower-cased addresses
	subject     string
	mimeType    string
}

// summarizeHeader reads only the header section. A header that does not
// parse still gives whatever fields could be read.
func summarizeHeader(raw []byte) headerSummary {
	var s headerSummary
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	mh := mail.Header{Header: message.Header{Header: h}}
	list := func(field string) []string {
		addrs, _ := mh.AddressList(field)
		var out []string
		for _, a := range addrs {
			out = append(out, strings.ToLower(a.Address))
		}
		return out
	}
	s.to, s.cc, s.bcc = list("To"), list("Cc"), list("Bcc")
	s.subject, _ = mh.Subject()
	s.mimeType = "text/plain" // RFC 2045 5.2
	if ct := h.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil {
			s.mimeType = strings.ToLower(mt)
		}
	}
	return s
}
