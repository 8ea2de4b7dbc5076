package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/control"
	"github.com/pochta/pochta/queue"
	"github.com/pochta/pochta/storage"
)

func queueListCommand() *command {
	return &command{
		name: "queue list", args: "[--status S] [--source user|system] [--user ADDRESS] [--json]",
		summary: "the outbound queue; S is one of outbox, held, sent, failed",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.status, "status", "", "only entries with this status: "+strings.Join(storage.QueueStatuses, ", "))
			fs.StringVar(&o.source, "source", "", "only mail users sent (user) or system notifications (system)")
			fs.StringVar(&o.user, "user", "", "only the entries this address sent")
			fs.BoolVar(&o.json, "json", false, "print JSON: an array of entries with id, status, source, from, to, cc, bcc, subject, mime_type, date, attempts, sent, sent_on, error, size")
		},
		run: func(ctx context.Context, e *env, _ []string) error {
			f := storage.QueueFilter{Status: e.o.status, Source: e.o.source, User: e.o.user}
			if err := f.Validate(); err != nil {
				return &usageError{"--" + strings.TrimSuffix(err.Error(), ": "+storage.ErrInvalid.Error())}
			}
			return withAPI(e, func(api control.API) error {
				list, err := api.QueueList(ctx, f)
				if err != nil {
					return err
				}
				if e.o.json {
					return printJSON(e.stdout, list)
				}
				if len(list) == 0 {
					if f == (storage.QueueFilter{}) {
						fmt.Fprintln(e.stdout, "the queue is empty")
					} else {
						fmt.Fprintln(e.stdout, "the queue has no such entries")
					}
					return nil
				}
				return printQueueTable(e.stdout, list)
			})
		},
	}
}

// printQueueTable shows the seed's columns (the body is in `queue show`).
func printQueueTable(w io.Writer, list []storage.QueueEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tSOURCE\tFROM\tTO\tCC\tBCC\tSUBJECT\tMIME TYPE\tDATE\tATTEMPTS\tSENT\tSENT ON\tERROR")
	for _, en := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			en.ID, en.Status, en.Source, cell(orNull(en.From), 40), addrs(en.To), addrs(en.Cc), addrs(en.Bcc),
			cell(en.Subject, 40), en.MimeType, en.Date.Local().Format(time.DateTime), en.Attempts,
			yesNo(en.Sent), when(en.SentOn), cell(en.Error, 60))
	}
	return tw.Flush()
}

func queueShowCommand() *command {
	return &command{
		name: "queue show", args: "ID [--json]",
		summary: "one queue entry with its recipients and body",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.BoolVar(&o.json, "json", false, "print JSON: the entry's fields, its recipients and body")
		},
		run: func(ctx context.Context, e *env, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			return withAPI(e, func(api control.API) error {
				en, err := api.QueueShow(ctx, ids[0])
				if err != nil {
					return notFound(ids[0], err)
				}
				if e.o.json {
					return printJSON(e.stdout, en)
				}
				printQueueEntry(e.stdout, en)
				return nil
			})
		},
	}
}

func printQueueEntry(w io.Writer, en *storage.QueueEntry) {
	line := func(k, v string) { fmt.Fprintf(w, "%-14s%s\n", k+":", v) }
	line("id", strconv.FormatUint(en.ID, 10))
	line("status", en.Status)
	line("source", en.Source)
	if en.User != "" {
		line("user", en.User)
	}
	line("from", orNull(en.From))
	line("to", strings.Join(en.To, ", "))
	line("cc", strings.Join(en.Cc, ", "))
	line("bcc", strings.Join(en.Bcc, ", "))
	line("subject", cell(en.Subject, 200))
	line("mime type", en.MimeType)
	line("date", en.Date.Local().Format(time.DateTime))
	line("size", humanBytes(en.Size))
	line("attempts", strconv.Itoa(en.Attempts))
	line("sent", yesNo(en.Sent))
	line("sent on", when(en.SentOn))
	switch en.Status {
	case storage.QueueOutbox:
		line("next attempt", en.NextAttempt.Local().Format(time.DateTime))
	case storage.QueueHeld:
		line("held until", en.HeldUntil.Local().Format(time.DateTime))
	}
	line("error", en.Error)
	fmt.Fprintln(w, "recipients:")
	for _, r := range en.Recipients {
		fmt.Fprintf(w, "  %s  %s  %s\n", r.Address, r.State, r.Reply)
	}
	fmt.Fprintln(w, "body:")
	io.WriteString(w, strings.ReplaceAll(en.Body, "\r\n", "\n"))
}

func queueResendCommand() *command {
	return &command{
		name: "queue resend", args: "ID...",
		summary: "puts failed (or sent) entries back into the outbox with attempts reset",
		minArgs: 1, maxArgs: -1,
		run: func(ctx context.Context, e *env, args []string) error {
			return eachEntry(ctx, e, args, func(api control.API, id uint64) error {
				en, err := api.QueueResend(ctx, id)
				if err == nil {
					fmt.Fprintf(e.stdout, "queue entry %d is back in the outbox (%d recipient(s) to try)\n", id, len(en.Pending()))
				}
				return err
			})
		},
	}
}

func queueDeleteCommand() *command {
	return &command{
		name: "queue delete", args: "ID...",
		summary: "removes queue entries",
		minArgs: 1, maxArgs: -1,
		run: func(ctx context.Context, e *env, args []string) error {
			return eachEntry(ctx, e, args, func(api control.API, id uint64) error {
				err := api.QueueDelete(ctx, id)
				if err == nil {
					fmt.Fprintf(e.stdout, "deleted queue entry %d\n", id)
				}
				return err
			})
		},
	}
}

// eachEntry runs fn for every ID, going on past failures; it fails (exit
// 1) naming every ID that failed.
func eachEntry(ctx context.Context, e *env, args []string, fn func(control.API, uint64) error) error {
	ids, err := parseIDs(args)
	if err != nil {
		return err
	}
	return withAPI(e, func(api control.API) error {
		var errs []error
		for _, id := range ids {
			if err := fn(api, id); err != nil {
				errs = append(errs, notFound(id, err))
			}
		}
		return errors.Join(errs...)
	})
}

// parseIDs reads queue entry IDs; anything else is a usage error.
func parseIDs(args []string) ([]uint64, error) {
	ids := make([]uint64, 0, len(args))
	for _, a := range args {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil || id == 0 {
			return nil, &usageError{fmt.Sprintf("%q is not a queue entry ID (a positive number, as `pochta queue list` shows)", a)}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// notFound words an unknown ID plainly; other errors pass as they are.
func notFound(id uint64, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return &control.Problem{Sentence: fmt.Sprintf("there is no queue entry %d", id), Err: err}
	}
	return err
}

// cell keeps a value from breaking the table.
func cell(s string, maxLen int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > maxLen {
		s = string(r[:maxLen-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

func addrs(l []string) string {
	return cell(strings.Join(l, ","), 60)
}

func orNull(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// startQueue starts the outbound queue of [email_queue] on store.
func startQueue(ctx context.Context, cfg *config.Config, store storage.Store, reg prometheus.Registerer, counts queue.Metrics, logger *slog.Logger) (*queue.Queue, error) {
	o, err := queueOptions(cfg)
	if err != nil {
		return nil, err
	}
	o.Store, o.Registerer, o.Metrics, o.Logger = store, reg, counts, logger.With("component", "queue")
	q, err := queue.New(o)
	if err != nil {
		return nil, err
	}
	if err := q.Start(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

// queueOptions maps the configuration to the queue's settings (at start
// and on reload).
func queueOptions(cfg *config.Config) (queue.Options, error) {
	password, err := cfg.RelayPassword()
	if err != nil {
		return queue.Options{}, err
	}
	qc, lc := cfg.EmailQueue, cfg.EmailLimit
	return queue.Options{
		Relay:               qc.Relay,
		RelayTLS:            qc.RelayTLS,
		Username:            qc.RelayUsername,
		Password:            password,
		Hostname:            cfg.Hostname,
		Postmaster:          cfg.Postmaster(),
		Admins:              cfg.Alerts.Admins,
		MaxAttempts:         qc.MaxAttempts,
		DelayNoticeAfter:    qc.DelayNoticeAfter,
		RetryMin:            qc.RetryMin.Duration,
		RetryMax:            qc.RetryMax.Duration,
		HealthCheckInterval: qc.HealthCheckInterval.Duration,
		RelayAlertInterval:  qc.RelayAlertInterval.Duration,
		SystemLimit:         lc.SystemLimit,
		UserLimit:           lc.UserLimit,
		Location:            cfg.Location(),
		Node:                cfg.MessageServer.Node, // "" = the host name (queue.Options)
		Retention:           qc.Retention.Duration,
	}, nil
}
