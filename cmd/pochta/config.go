package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pochta/pochta/config"
)

func configCheckCommand() *command {
	return &command{
		name: "config check", args: "",
		summary: "validates the configuration; exits 1 naming every error with file, line and key",
		run: func(_ context.Context, e *env, _ []string) error {
			_, path, err := config.Resolve(e.o.config)
			if err != nil {
				return err
			}
			if path == "" {
				fmt.Fprintln(e.stdout, "no configuration file: the built-in development configuration is valid")
				return nil
			}
			fmt.Fprintf(e.stdout, "%s: OK\n", path)
			return nil
		},
	}
}

func configImportCommand() *command {
	return &command{
		name: "config import", args: "FILE.xml",
		summary: "prints a TOML configuration translated from a legacy config.xml; warns on stderr about what it leaves out",
		minArgs: 1, maxArgs: 1,
		run: func(_ context.Context, e *env, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("reading the legacy configuration: %w", err)
			}
			im, err := config.ImportXML(args[0], data)
			if err != nil {
				return err
			}
			for _, w := range im.Warnings {
				fmt.Fprintln(e.stderr, w)
			}
			return im.WriteTOML(e.stdout)
		},
	}
}
