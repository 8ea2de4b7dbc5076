package storage

// The queue's rules (records.go): what a claim, an attempt's record, a
// resend, a lease and the relay's state do to the queue's records. The
// daily limits, the holds and the de-duplication of their alerts are
// checked and counted inside the claim's one RecordTx, so parallel claims
// (from this node or another) never overshoot a limit and an alert goes
// out once per day and limit.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// claimQueueEntry implements QueueStore.ClaimQueueEntry over any Records.
func claimQueueEntry(ctx context.Context, r Records, c QueueClaim) (*QueueClaimed, error) {
	if err := c.checkLease(); err != nil {
		return nil, fmt.Errorf("storage: claim queue entry %d: %w", c.ID, err)
	}
	sysAlert, size1, err := r.PrepareNotices([]*Notice{c.SystemAlert}, c.Now)
	if err != nil {
		return nil, fmt.Errorf("storage: claim queue entry %d: system alert: %w", c.ID, err)
	}
	userAlert, size2, err := r.PrepareNotices([]*Notice{c.UserAlert}, c.Now)
	if err != nil {
		return nil, fmt.Errorf("storage: claim queue entry %d: user alert: %w", c.ID, err)
	}
	var res *QueueClaimed
	err = r.UpdateRecords(ctx, size1+size2, func(tx RecordTx, ev *Events) error {
		var err error
		res, err = claimIn(tx, c, sysAlert, userAlert, ev)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: claim queue entry %d: %w", c.ID, err)
	}
	return res, nil
}

// claimIn is one claim inside its transaction.
func claimIn(tx RecordTx, c QueueClaim, sysAlert, userAlert []PreparedNotice, ev *Events) (*QueueClaimed, error) {
	e, err := tx.QueueEntry(c.ID)
	if err != nil {
		return nil, err
	}
	res := &QueueClaimed{}
	if e.leasedAt(c.Now) {
		res.LeasedBy = e.LeaseOwner
		return res, nil
	}
	switch {
	case e.Status == QueueHeld && !e.HeldUntil.After(c.Now):
	case e.Status == QueueOutbox && !e.NextAttempt.After(c.Now):
	default:
		return res, nil // not due (any more)
	}
	old := e.Clone()
	e.Status, e.HeldUntil = QueueOutbox, time.Time{}
	if e.NextAttempt.After(c.Now) || e.NextAttempt.IsZero() {
		e.NextAttempt = c.Now
	}
	if e.CountedDay == "" {
		if err := tx.PruneDayCounts(c.Day); err != nil {
			return nil, err
		}
		user := ""
		if e.Source == SourceUser && e.User != "" {
			user = e.User
		}
		sys, err := tx.DayCount(c.Day, "")
		if err != nil {
			return nil, err
		}
		usr := 0
		if user != "" {
			if usr, err = tx.DayCount(c.Day, user); err != nil {
				return nil, err
			}
		}
		switch {
		case c.SystemLimit > 0 && sys >= c.SystemLimit:
			res.Held = LimitSystem
		case user != "" && c.UserLimit > 0 && usr >= c.UserLimit:
			res.Held = LimitUser
		}
		if res.Held != "" {
			e.Status, e.HeldUntil = QueueHeld, c.HoldUntil
			e.LeaseOwner, e.LeaseUntil = "", time.Time{}
			alert, who := sysAlert, ""
			if res.Held == LimitUser {
				alert, who = userAlert, user
			}
			if err := tx.PruneAlerted(c.Day); err != nil {
				return nil, err
			}
			alerted, err := tx.Alerted(c.Day, who)
			if err != nil {
				return nil, err
			}
			if !alerted && alert != nil {
				if err := tx.SetAlerted(c.Day, who); err != nil {
					return nil, err
				}
				if err := tx.DeliverNotices(alert, ev); err != nil {
					return nil, fmt.Errorf("limit alert: %w", err)
				}
				res.Alerted = true
			}
			return res, tx.SaveQueueEntry(old, e, ev)
		}
		if err := tx.AddDayCount(c.Day, "", 1); err != nil {
			return nil, err
		}
		if user != "" {
			if err := tx.AddDayCount(c.Day, user, 1); err != nil {
				return nil, err
			}
		}
		e.CountedDay, res.Counted = c.Day, true
	}
	e.LeaseOwner, e.LeaseUntil = c.Owner, c.LeaseUntil
	if err := tx.SaveQueueEntry(old, e, ev); err != nil {
		return nil, err
	}
	// The body is streamed by QueueBody, not loaded here.
	if e.Header, err = tx.QueueHeader(e.ID); err != nil {
		return nil, err
	}
	res.Entry = e
	return res, nil
}

// updateQueueEntry implements QueueStore.UpdateQueueEntry over any Records.
func updateQueueEntry(ctx context.Context, r Records, u QueueUpdate) (*QueueEntry, error) {
	if u.Entry == nil {
		return nil, fmt.Errorf("storage: update queue entry: no entry: %w", ErrInvalid)
	}
	id := u.Entry.ID
	if !slices.Contains(QueueStatuses, u.Entry.Status) {
		return nil, fmt.Errorf("storage: update queue entry %d: status %q: %w", id, u.Entry.Status, ErrInvalid)
	}
	ns := make([]*Notice, len(u.Notices))
	for i := range u.Notices {
		ns[i] = &u.Notices[i]
	}
	notices, size, err := r.PrepareNotices(ns, time.Now())
	if err != nil {
		return nil, fmt.Errorf("storage: update queue entry %d: %w", id, err)
	}
	var res *QueueEntry
	err = r.UpdateRecords(ctx, size, func(tx RecordTx, ev *Events) error {
		res = nil
		old, err := tx.QueueEntry(id)
		if err != nil {
			return err
		}
		if old.Rev != u.Entry.Rev {
			return fmt.Errorf("queue entry %d changed meanwhile: %w", id, ErrInvalid)
		}
		if len(old.Recipients) != len(u.Entry.Recipients) {
			return fmt.Errorf("queue entry %d: recipients changed: %w", id, ErrInvalid)
		}
		for i, r := range u.Entry.Recipients {
			if r.Address != old.Recipients[i].Address || !slices.Contains([]string{RcptPending, RcptSent, RcptFailed}, r.State) {
				return fmt.Errorf("queue entry %d: recipient %q: %w", id, r.Address, ErrInvalid)
			}
		}
		e := u.Entry.Clone()
		// What describes the message is not the updater's to change.
		e.Source, e.User, e.From, e.Subject, e.MimeType, e.MessageID = old.Source, old.User, old.From, old.Subject, old.MimeType, old.MessageID
		e.To, e.Cc, e.Bcc, e.Date, e.Size, e.TrackingID = old.To, old.Cc, old.Bcc, old.Date, old.Size, old.TrackingID
		e.Body = ""
		// Recording the attempt ends it: the lease goes with it.
		e.LeaseOwner, e.LeaseUntil = "", time.Time{}
		if u.Uncount && old.CountedDay != "" {
			if err := tx.AddDayCount(old.CountedDay, "", -1); err != nil {
				return err
			}
			if old.Source == SourceUser && old.User != "" {
				if err := tx.AddDayCount(old.CountedDay, old.User, -1); err != nil {
					return err
				}
			}
			e.CountedDay = ""
		}
		if err := tx.SaveQueueEntry(old, e, ev); err != nil {
			return err
		}
		if err := tx.DeliverNotices(notices, ev); err != nil {
			return fmt.Errorf("notice: %w", err)
		}
		res = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: update queue entry %d: %w", id, err)
	}
	return res, nil
}

// resendQueueEntry implements QueueStore.ResendQueueEntry over any Records.
func resendQueueEntry(ctx context.Context, r Records, id uint64, now time.Time) (*QueueEntry, error) {
	var res *QueueEntry
	err := r.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		res = nil
		old, err := tx.QueueEntry(id)
		if err != nil {
			return err
		}
		if old.Status != QueueFailed && old.Status != QueueSent {
			return fmt.Errorf("queue entry %d is %s: only failed or sent entries can be resent: %w", id, old.Status, ErrInvalid)
		}
		e := old.Clone()
		for i := range e.Recipients {
			r := &e.Recipients[i]
			if old.Status == QueueSent || r.State == RcptFailed {
				*r = QueueRecipient{Address: r.Address, State: RcptPending}
			}
		}
		e.Status, e.Attempts, e.Error = QueueOutbox, 0, ""
		e.Sent, e.SentOn, e.DelayNotified = false, nil, false
		e.NextAttempt, e.HeldUntil = now, time.Time{}
		// Relaying it again counts again toward that day's limit.
		e.CountedDay = ""
		if err := tx.SaveQueueEntry(old, e, ev); err != nil {
			return err
		}
		ev.Add(Event{Kind: EventQueued, QueueID: id})
		res = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: resend: %w", err)
	}
	return res, nil
}

// queueDayCount implements QueueStore.QueueDayCount over any Records.
func queueDayCount(ctx context.Context, r Records, day, user string) (int, int, error) {
	var sys, usr int
	err := r.ViewRecords(ctx, func(tx RecordTx) error {
		var err error
		if sys, err = tx.DayCount(day, ""); err != nil {
			return err
		}
		if user != "" {
			usr, err = tx.DayCount(day, user)
		}
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("storage: queue day count: %w", err)
	}
	return sys, usr, nil
}

// relayState implements QueueStore.RelayState over any Records.
func relayState(ctx context.Context, r Records) (string, error) {
	var st string
	err := r.ViewRecords(ctx, func(tx RecordTx) error {
		var err error
		st, err = tx.RelayState()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("storage: relay state: %w", err)
	}
	return st, nil
}

// setRelayState implements QueueStore.SetRelayState over any Records: the
// alert goes out with the change of state only, so a relay that stays
// down alerts once.
func setRelayState(ctx context.Context, r Records, state string, alert *Notice) (bool, error) {
	notices, size, err := r.PrepareNotices([]*Notice{alert}, time.Now())
	if err != nil {
		return false, fmt.Errorf("storage: relay state: %w", err)
	}
	changed := false
	err = r.UpdateRecords(ctx, size, func(tx RecordTx, ev *Events) error {
		changed = false
		cur, err := tx.RelayState()
		if err != nil || cur == state {
			return err
		}
		if err := tx.SetRelayState(state); err != nil {
			return err
		}
		changed = true
		return tx.DeliverNotices(notices, ev)
	})
	if err != nil {
		return false, fmt.Errorf("storage: relay state: %w", err)
	}
	return changed, nil
}

// renewQueueLease implements QueueStore.RenewQueueLease over any Records:
// it moves the lease of r.ID to r.Until and returns the entry with its new
// Rev. ErrLeaseLost when the lease is not r.Owner's at r.Rev any more.
func renewQueueLease(ctx context.Context, rs Records, r LeaseRenewal) (*QueueEntry, error) {
	if r.Owner == "" || !r.Until.After(r.Now) {
		return nil, fmt.Errorf("storage: renew lease of queue entry %d: owner %q until %s: %w", r.ID, r.Owner, r.Until, ErrInvalid)
	}
	var res *QueueEntry
	err := rs.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		res = nil
		old, err := tx.QueueEntry(r.ID)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("queue entry %d: deleted: %w", r.ID, ErrLeaseLost)
		}
		if err != nil {
			return err
		}
		if old.Status != QueueOutbox || old.LeaseOwner != r.Owner || old.Rev != r.Rev {
			return fmt.Errorf("queue entry %d is leased to %q at rev %d: %w", r.ID, old.LeaseOwner, old.Rev, ErrLeaseLost)
		}
		e := old.Clone()
		e.LeaseUntil = r.Until
		if err := tx.SaveQueueEntry(old, e, ev); err != nil {
			return err
		}
		res = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: renew lease: %w", err)
	}
	return res, nil
}

// releaseQueueLeases implements QueueStore.ReleaseQueueLeases over any
// Records: it ends every lease owner holds that runs out after now and no
// later than horizon (the longest lease owner takes), making those entries
// due at once, and returns how many it ended. A node calls it when it
// starts, before it claims anything: what it finds was left by its
// previous run.
func releaseQueueLeases(ctx context.Context, r Records, owner string, now, horizon time.Time) (int, error) {
	if owner == "" {
		return 0, fmt.Errorf("storage: release queue leases: no owner: %w", ErrInvalid)
	}
	released := 0
	err := r.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
		released = 0
		// Leased entries are due at their lease's end, so only the
		// entries due between now and horizon need reading.
		ids, err := tx.QueueDueBetween(now, horizon)
		if err != nil {
			return err
		}
		for _, id := range ids {
			old, err := tx.QueueEntry(id)
			if err != nil {
				return err
			}
			if old.LeaseOwner != owner || !old.leasedAt(now) {
				continue
			}
			e := old.Clone()
			e.LeaseOwner, e.LeaseUntil = "", time.Time{}
			if err := tx.SaveQueueEntry(old, e, ev); err != nil {
				return err
			}
			ev.Add(Event{Kind: EventQueued, QueueID: id})
			released++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storage: release queue leases of %q: %w", owner, err)
	}
	return released, nil
}
