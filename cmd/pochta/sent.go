package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pochta/pochta/control"
)

func sentStatusCommand() *command {
	return &command{
		name: "sent status", args: "ADDRESS [--json]",
		summary: "the user's sent messages and who has not received/read them yet (\"Not delivered\")",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.BoolVar(&o.json, "json", false, "print JSON: an array of messages with message_id, subject, date, recipients (address, state) and pending")
		},
		run: func(ctx context.Context, e *env, args []string) error {
			return withAPI(e, func(api control.API) error {
				list, err := api.SentStatus(ctx, args[0])
				if err != nil {
					return err
				}
				if e.o.json {
					return printJSON(e.stdout, list)
				}
				if len(list) == 0 {
					fmt.Fprintf(e.stdout, "%s has no tracked sent messages\n", strings.ToLower(args[0]))
					return nil
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DATE\tSUBJECT\tMESSAGE-ID\tNOT DELIVERED\tRECIPIENTS")
				for _, m := range list {
					pending := "-"
					if len(m.Pending) > 0 {
						pending = strings.Join(m.Pending, ", ")
					}
					states := make([]string, 0, len(m.Recipients))
					for _, r := range m.Recipients {
						states = append(states, r.Address+" ("+r.State+")")
					}
					messageID := m.MessageID
					if messageID == "" {
						messageID = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Date.Local().Format(time.DateTime),
						oneLine(m.Subject), cell(messageID, 100), pending, strings.Join(states, ", "))
				}
				return tw.Flush()
			})
		},
	}
}

// oneLine keeps a subject from breaking the table: control characters
// become spaces and long subjects are cut.
func oneLine(s string) string {
	const maxLen = 60
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
		s = "(no subject)"
	}
	return s
}
