package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/pochta/pochta/control"
)

// errBadRecords makes `pochta check` exit 1 while damaged records remain;
// its report is already printed.
var errBadRecords = errors.New("damaged records remain")

func checkCommand() *command {
	return &command{
		name: "check", args: "[--repair] [--json]",
		summary: "reads every record of the database and reports those it cannot decode; --repair quarantines them",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.BoolVar(&o.repair, "repair", false, "move the messages that cannot be decoded into the quarantine, so the rest of their mailbox works again")
			fs.BoolVar(&o.json, "json", false, `print JSON: {"checked": N, "bad": [{"user", "mailbox", "uid", "error"}]}`)
		},
		run: func(ctx context.Context, e *env, _ []string) error {
			return withAPI(e, func(api control.API) error {
				rep, err := api.Check(ctx, e.o.repair)
				if err != nil {
					return err
				}
				if e.o.json {
					if err := printJSON(e.stdout, rep); err != nil {
						return err
					}
				} else {
					fmt.Fprintf(e.stdout, "checked %d records: %d bad\n", rep.Checked, len(rep.Bad))
					if len(rep.Bad) > 0 {
						tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "USER\tMAILBOX\tUID\tSTATE\tERROR")
						for _, b := range rep.Bad {
							state := "damaged"
							if b.Quarantined {
								state = "quarantined"
							}
							fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", b.User, b.Mailbox, b.UID, state, b.Error)
						}
						if err := tw.Flush(); err != nil {
							return err
						}
					}
				}
				if n := rep.Remaining(); n > 0 {
					// UID 0 is a damaged page, not one message: --repair
					// cannot move it, so the advice is the backup.
					pages := 0
					for _, b := range rep.Bad {
						if !b.Quarantined && b.UID == 0 {
							pages++
						}
					}
					sentence := fmt.Sprintf("%d damaged records; `pochta check --repair` moves them into the quarantine", n)
					switch {
					case e.o.repair:
						sentence = fmt.Sprintf("%d damaged records could not be quarantined (a damaged page, not one message): restore the database from a backup", n)
					case pages == n:
						sentence = fmt.Sprintf("%d damaged records are damaged pages, not single messages, which --repair cannot move: stop the daemon and restore the database from a backup", n)
					}
					return &control.Problem{Sentence: sentence, Err: errBadRecords}
				}
				return nil
			})
		},
	}
}
