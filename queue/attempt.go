package queue

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/pochta/pochta/storage"
)

// attempt claims one due entry (checking the daily limits), relays it and
// records the outcome with its notices.
func (q *Queue) attempt(ctx context.Context, due storage.QueueEntry) {
	now := q.now()
	day, holdUntil := q.day(now)
	claim := storage.QueueClaim{
		ID:          due.ID,
		Now:         now,
		Day:         day,
		HoldUntil:   holdUntil,
		SystemLimit: q.opt().SystemLimit,
		UserLimit:   q.opt().UserLimit,
		Owner:       q.opt().Node,
		LeaseUntil:  now.Add(q.opt().Lease),
	}
	if q.opt().SystemLimit > 0 {
		claim.SystemAlert = q.systemLimitAlert(now, holdUntil)
	}
	if q.opt().UserLimit > 0 && due.Source == storage.SourceUser && due.User != "" {
		claim.UserAlert = q.userLimitAlert(due.User, now, holdUntil)
	}
	res, err := q.store.ClaimQueueEntry(ctx, claim)
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, storage.ErrNotFound):
		return // deleted meanwhile
	case err != nil:
		q.log.Error("queue: claiming an entry failed", "id", due.ID, "err", err)
		return
	case res.Held != "":
		q.m.held.WithLabelValues(res.Held).Inc()
		q.log.Info("queue entry held by the daily limit", "id", due.ID, "limit", res.Held,
			"user", due.User, "until", holdUntil, "alerted", res.Alerted)
		return
	case res.LeasedBy != "":
		q.log.Debug("queue entry is being attempted elsewhere", "id", due.ID, "node", res.LeasedBy)
		return
	case res.Entry == nil:
		return
	}
	e := res.Entry
	start := time.Now()
	sendCtx, cut := context.WithCancel(ctx)
	keeper := q.keepLease(e, cut)
	defer keeper.finish() // a panic must not leave it renewing
	out := q.relay.Load().send(sendCtx, e.From, e.Pending(), q.relayMessage(sendCtx, e))
	if out.fault != faultAborted {
		// The relay has been tried (answered or not) before the outcome
		// is recorded: whoever sees the entry settled sees that too.
		q.mu.Lock()
		q.tried = true
		q.mu.Unlock()
	}
	rev, lost := keeper.finish()
	cut()
	e.Rev = rev
	if lost != nil {
		q.log.Warn("queue: attempt cut off: its lease was lost", "id", e.ID, "err", lost)
	}
	upd := q.apply(e, out, res.Counted, q.now())

	// Counted before the result is stored, so whoever sees the result sees
	// the count.
	result := resultLabel(out)
	if out.fault != faultAborted {
		q.m.attempts.WithLabelValues(result).Inc()
	}
	rctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	saved, err := q.store.UpdateQueueEntry(rctx, upd)
	attrs := []any{"id", e.ID, "from", e.From, "rcpts", len(e.Pending()), "result", result,
		"duration", time.Since(start).Round(time.Millisecond)}
	if saved != nil {
		attrs = append(attrs, "status", saved.Status, "attempts", saved.Attempts)
		if saved.Status == storage.QueueOutbox && out.fault == faultNone {
			attrs = append(attrs, "next_attempt", saved.NextAttempt)
		}
	}
	if upd.Entry.Error != "" {
		attrs = append(attrs, "error", upd.Entry.Error)
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		q.log.Info("queue entry deleted during its attempt", attrs...)
	case err != nil:
		// The entry stays as claimed and is tried again: at worst a
		// duplicate, never a loss.
		q.log.Error("queue: recording an attempt failed", append(attrs, "err", err)...)
	default:
		q.log.Info("queue attempt", attrs...)
	}

	switch out.fault {
	case faultUnreachable, faultSettings:
		q.relayFailed(&failure{fault: out.fault, text: out.text})
	case faultNone:
		q.relayBack()
	}
}

// relayMessage streams the entry's stored message: nothing of it is in
// memory but the chunk being written.
func (q *Queue) relayMessage(ctx context.Context, e *storage.QueueEntry) relayMessage {
	return relayMessage{size: e.Size, writeTo: func(w io.Writer) (int64, error) {
		return q.store.QueueBody(ctx, e.ID, w)
	}}
}

// resultLabel is the outcome for pochta_relay_attempts_total.
func resultLabel(out outcome) string {
	if out.fault != faultNone {
		return "network"
	}
	result := "sent"
	for _, r := range out.rcpts {
		switch r.kind {
		case rcptTemporary:
			return "temporary"
		case rcptPermanent:
			result = "permanent"
		}
	}
	return result
}

// apply computes an entry's state after an attempt, with its notices.
func (q *Queue) apply(e *storage.QueueEntry, out outcome, counted bool, now time.Time) storage.QueueUpdate {
	n := e.Clone()
	n.Body = ""
	upd := storage.QueueUpdate{Entry: n}
	if out.fault != faultNone {
		// Nothing was judged: no attempt spent, the entry stays due and
		// goes out when the relay is back.
		upd.Uncount = counted
		if out.fault != faultAborted {
			n.Error = out.text
		}
		return upd
	}
	n.Attempts++
	n.LastAttempt = now
	n.Error = out.text
	var failed []storage.QueueRecipient
	relayed := false
	for i := range n.Recipients {
		r := &n.Recipients[i]
		if r.State != storage.RcptPending {
			continue
		}
		res, ok := out.rcpts[r.Address]
		if !ok {
			continue
		}
		r.Reply, r.Status = res.reply, res.status
		switch res.kind {
		case rcptSent:
			r.State = storage.RcptSent
			relayed = true
		case rcptPermanent:
			r.State = storage.RcptFailed
			failed = append(failed, *r)
		}
	}
	upd.Uncount = counted && !relayed
	pending := len(n.Pending())
	if pending > 0 && n.Attempts >= q.opt().MaxAttempts {
		for i := range n.Recipients {
			if r := &n.Recipients[i]; r.State == storage.RcptPending {
				r.State = storage.RcptFailed
				failed = append(failed, *r)
			}
		}
		pending = 0
	}
	switch {
	case pending > 0:
		n.Status = storage.QueueOutbox
		n.NextAttempt = now.Add(q.backoff(n.Attempts))
	case anyFailed(n):
		n.Status, n.NextAttempt = storage.QueueFailed, time.Time{}
	default:
		n.Status, n.NextAttempt = storage.QueueSent, time.Time{}
		n.Sent = true
		t := now
		n.SentOn = &t
	}
	if len(failed) > 0 {
		upd.Notices = append(upd.Notices, q.undeliverable(e, n, failed, now))
	}
	if pending > 0 && q.opt().DelayNoticeAfter > 0 && n.Attempts >= q.opt().DelayNoticeAfter && !n.DelayNotified {
		n.DelayNotified = true
		upd.Notices = append(upd.Notices, q.delayed(e, n, now))
	}
	return upd
}

func anyFailed(e *storage.QueueEntry) bool {
	for _, r := range e.Recipients {
		if r.State == storage.RcptFailed {
			return true
		}
	}
	return false
}

// retryUntil estimates when the last attempt of an entry that has made
// attempts attempts will be made.
func (q *Queue) retryUntil(attempts int, now time.Time) time.Time {
	t := now
	for n := attempts; n < q.opt().MaxAttempts; n++ {
		t = t.Add(q.backoff(n))
	}
	return t
}
