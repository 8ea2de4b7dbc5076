// Command pochta is the pochta mail daemon and its administration tool.
//
// `pochta serve` runs the daemon; every other command administers it,
// through the running daemon's control socket when there is one and on the
// database directly when there is not (see package control). Flags may stand
// before or after the arguments. Exit codes: 0 success, 1 operational error,
// 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/pochta/pochta/control"
)

// Exit codes promised by SPEC.md.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// command is one subcommand: its usage line, its flags and what it does.
type command struct {
	name    string // "user add"
	args    string // "ADDRESS [--admin] [--password-stdin]"
	summary string
	minArgs int
	maxArgs int // -1: any
	flags   func(fs *flag.FlagSet, o *opts)
	run     func(ctx context.Context, e *env, args []string) error
}

// opts holds every flag any command defines; each command registers only
// its own.
type opts struct {
	config        string
	json          bool
	admin         bool
	passwordStdin bool
	pollInterval  string
	status        string
	source        string
	user          string
	repair        bool
	yes           bool
	to            string
}

// env is what a running command sees.
type env struct {
	o      opts
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// log is the command's debug log (stderr at the configured [log]
	// level once the configuration is loaded; discarded before).
	log *slog.Logger
	// terminal is true when stdin is a terminal (prompts are allowed).
	terminal bool
}

// usageError is a mistake in how a command was called: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func commands() []*command {
	cmds := []*command{
		serveCommand(),
		userAddCommand(), userPasswdCommand(), userDelCommand(), userListCommand(), userSettingsCommand(),
		statusCommand(), backupCommand(), sentStatusCommand(), checkCommand(),
		configCheckCommand(), configImportCommand(),
		queueListCommand(), queueShowCommand(), queueResendCommand(), queueDeleteCommand(),
		migrateCommand(), versionCommand(),
	}
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code.
func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	argv, onlyConfig := configAfterCommand(argv)
	cmd, rest := findCommand(argv)
	if cmd == nil {
		if len(argv) == 0 || onlyConfig {
			printOverview(stdout)
			return exitUsage
		}
		if argv[0] == "help" || argv[0] == "--help" || argv[0] == "-h" {
			printOverview(stdout)
			return exitOK
		}
		if group := commandGroup(argv[0]); group != nil {
			return groupUsage(argv, group, stdout, stderr)
		}
		fmt.Fprintf(stderr, "pochta: unknown command %q\n\n", strings.Join(argv, " "))
		printOverview(stderr)
		return exitUsage
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, log: slog.New(slog.DiscardHandler), terminal: isTerminal(stdin)}
	fs := newFlagSet(cmd, &e.o)
	args, err := parseInterleaved(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, cmd, fs)
		return exitOK
	}
	if err == nil {
		err = checkArgCount(cmd, args)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pochta %s: %v\n", cmd.name, err)
		printUsage(stderr, cmd, fs)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, e, args); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "pochta %s: %v\n", cmd.name, err)
			printUsage(stderr, cmd, fs)
			return exitUsage
		}
		// A person reads one sentence per failure; the layers behind it
		// go to the debug log ([log] level = "debug").
		for _, line := range sentences(err) {
			fmt.Fprintf(stderr, "pochta: %s\n", line)
		}
		e.log.Debug("command failed", "command", cmd.name, "err", errorDetail(err))
		return exitError
	}
	return exitOK
}

// sentences are the lines a person reads for err: one per failure joined
// in it (queue resend 1 2 3 can fail three times), each the sentence of its
// control.Problem when it has one.
func sentences(err error) []string {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, sentences(e)...)
		}
		return out
	}
	return []string{control.Sentence(err)}
}

// errorDetail is err's whole internal chain, for the debug log.
func errorDetail(err error) string {
	var p *control.Problem
	if errors.As(err, &p) && p.Err != nil {
		return p.Sentence + " (" + p.Detail() + ")"
	}
	return err.Error()
}

// commandGroup returns the commands whose first word is word when that word
// names a group ("user", "queue", "sent", "config") rather than a command.
func commandGroup(word string) []*command {
	var group []*command
	for _, c := range commands() {
		if first, _, ok := strings.Cut(c.name, " "); ok && first == word {
			group = append(group, c)
		}
	}
	return group
}

// groupUsage answers a group word without a known subcommand with the
// group's subcommands: on stdout with exit 0 for --help, else on stderr
// with exit 2.
func groupUsage(argv []string, group []*command, stdout, stderr io.Writer) int {
	w, code := stderr, exitUsage
	for i, a := range argv[1:] {
		if a == "--help" || a == "-h" || i == 0 && a == "help" {
			w, code = stdout, exitOK
			break
		}
		if i == 0 && !strings.HasPrefix(a, "-") {
			fmt.Fprintf(stderr, "pochta: unknown command %q\n\n", argv[0]+" "+a)
			break
		}
	}
	fmt.Fprintf(w, "usage: pochta %s SUBCOMMAND [ARGS] [--config FILE]\n\nsubcommands:\n", argv[0])
	for _, c := range group {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n`pochta %s SUBCOMMAND --help` shows a subcommand's flags.\n", argv[0])
	return code
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newFlagSet defines the command's flags (and --config, which every
// command takes) on o.
func newFlagSet(cmd *command, o *opts) *flag.FlagSet {
	fs := flag.NewFlagSet("pochta "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.config, "config", "", "configuration file (default $POCHTA_CONFIG, else /etc/pochta/pochta.toml, else the built-in development config)")
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	return fs
}

// configAfterCommand moves a leading --config FILE (or --config=FILE, with
// one dash or two) behind the command, so `pochta --config FILE status`
// works like `pochta status --config FILE` instead of being an unknown
// command "--config".
func configAfterCommand(argv []string) (moved []string, onlyConfig bool) {
	if len(argv) == 0 {
		return argv, false
	}
	n := 0
	switch a := argv[0]; {
	case (a == "--config" || a == "-config") && len(argv) >= 2:
		n = 2
	case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
		n = 1
	default:
		return argv, false
	}
	return append(argv[n:len(argv):len(argv)], argv[:n]...), len(argv) == n
}

// findCommand matches the longest command name at the start of argv
// ("user add" before "user").
func findCommand(argv []string) (*command, []string) {
	var best *command
	bestLen := 0
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(words) > len(argv) || len(words) <= bestLen {
			continue
		}
		match := true
		for i, w := range words {
			if argv[i] != w {
				match = false
				break
			}
		}
		if match {
			best, bestLen = c, len(words)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, argv[bestLen:]
}

// parseInterleaved parses flags wherever they stand among the arguments:
// the standard flag package stops at the first argument, so parsing resumes
// after each one. "--" ends flag parsing.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// fs.Parse consumed a "--" itself when it stopped on it.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func checkArgCount(cmd *command, args []string) error {
	switch {
	case len(args) < cmd.minArgs:
		return fmt.Errorf("missing argument (want %s)", cmd.args)
	case cmd.maxArgs >= 0 && len(args) > cmd.maxArgs:
		return fmt.Errorf("unexpected argument %q", args[cmd.maxArgs])
	}
	return nil
}

func printUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: pochta %s %s\n\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.summary)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		fmt.Fprintf(w, "  --%s%s\n        %s\n", f.Name, name, usage)
	})
}

func printOverview(w io.Writer) {
	fmt.Fprintln(w, "pochta: a self-hosted mail server (SMTP submission, IMAP, relay queue)")
	fmt.Fprintln(w, "\nusage: pochta COMMAND [ARGS] [--config FILE]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`pochta COMMAND --help` shows a command's flags.")
}
